# TensorRT, dynamic input from 320x320 to 1344x1344 (optimised for 640x640), batch 1.
_base_ = ['./_base_/mmdet_detection.py', './_base_/backends/tensorrt.py']
onnx_config = dict(
    dynamic_axes=dict(
        input={0: 'batch', 2: 'height', 3: 'width'},
        dets={0: 'batch', 1: 'num_dets'},
        labels={0: 'batch', 1: 'num_dets'}))
backend_config = dict(
    model_inputs=[
        dict(input_shapes=dict(input=dict(min_shape=[1, 3, 320, 320], opt_shape=[1, 3, 640, 640],
                                          max_shape=[1, 3, 1344, 1344])))
    ])
