# ncnn through mmdeploy (needs an mmdeploy source build with ncnn support, see _base_/backends/ncnn.py).
_base_ = ['./_base_/mmdet_detection.py', './_base_/backends/ncnn.py']
codebase_config = dict(model_type='ncnn_end2end')
onnx_config = dict(output_names=['detection_output'], input_shape=[320, 320])
