# Faster R-CNN + ShuffleNet V2 1.0x + FPN, COCO 1x (configs/faster-rcnn_shufflenetv2.py under its mmdet-style name).
_base_ = '../faster-rcnn_shufflenetv2.py'
