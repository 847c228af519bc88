# ONNX Runtime, static 256x256 input: the mini COCO RetinaNet (configs/mini, image_size 256).
_base_ = ['./_base_/mmdet_detection.py', './_base_/backends/onnxruntime.py']
onnx_config = dict(input_shape=[256, 256])
