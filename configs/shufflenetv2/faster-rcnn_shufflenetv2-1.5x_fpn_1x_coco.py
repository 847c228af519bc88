# Faster R-CNN + ShuffleNet V2 1.5x + FPN, COCO 1x. ImageNet weights: torchvision's,
#   named below: downloaded, checked (SHA-256), converted and cached on first use; offline: docs/backbones.md "Weights".
_base_ = '../faster-rcnn_shufflenetv2.py'

model = dict(
    backbone=dict(
        widen_factor=1.5,
        init_cfg=dict(type='Pretrained', checkpoint='shufflenet_det://torchvision/shufflenet_v2_x1_5')),
    neck=dict(in_channels=[24, 176, 352, 704]))  # = backbone.out_channels (stem + stage2/3/4 of ShuffleNet V2 1.5x)
