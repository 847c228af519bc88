# RetinaNet + ShuffleNet V2 1.0x + FPN, COCO 1x: the project's default entry (configs/retinanet_shufflenetv2.py),
# under its mmdet-style name. Weights and usage are documented there.
_base_ = '../retinanet_shufflenetv2.py'
