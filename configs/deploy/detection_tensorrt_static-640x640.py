# TensorRT, static 1x3x640x640.
_base_ = ['./_base_/mmdet_detection.py', './_base_/backends/tensorrt.py']
onnx_config = dict(input_shape=[640, 640])
backend_config = dict(
    model_inputs=[
        dict(input_shapes=dict(input=dict(min_shape=[1, 3, 640, 640], opt_shape=[1, 3, 640, 640],
                                          max_shape=[1, 3, 640, 640])))
    ])
