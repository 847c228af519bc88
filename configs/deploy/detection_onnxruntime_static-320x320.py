# ONNX Runtime, static 320x320 input: RetinaNet-ShuffleNetV2 at its benchmark size.
_base_ = ['./_base_/mmdet_detection.py', './_base_/backends/onnxruntime.py']
onnx_config = dict(input_shape=[320, 320])
