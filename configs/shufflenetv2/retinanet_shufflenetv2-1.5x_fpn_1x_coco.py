# RetinaNet + ShuffleNet V2 1.5x + FPN, COCO 1x. ImageNet weights: torchvision's,
#   named below: downloaded, checked (SHA-256), converted and cached on first use; offline: docs/backbones.md "Weights".
_base_ = '../retinanet_shufflenetv2.py'

model = dict(
    backbone=dict(
        widen_factor=1.5,
        init_cfg=dict(type='Pretrained', checkpoint='shufflenet_det://torchvision/shufflenet_v2_x1_5')),
    neck=dict(in_channels=[176, 352, 704]))  # = backbone.out_channels (stage2/3/4 of ShuffleNet V2 1.5x)
