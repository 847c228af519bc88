# Lite-s: ShuffleNet V2 0.5x, 64-channel GhostPAN and head, at 320x320 (the lite-m recipe).
#   ImageNet weights: torchvision's 0.5x, named below (fetched and converted on first use; docs/backbones.md "Weights").
_base_ = './lite-m_shufflenetv2-1x_300e_coco-320.py'

neck_channels = 64
model = dict(
    backbone=dict(
        widen_factor=0.5,
        init_cfg=dict(type='Pretrained', checkpoint='shufflenet_det://torchvision/shufflenet_v2_x0_5')),
    neck=dict(in_channels=[48, 96, 192], out_channels=neck_channels),  # = backbone.out_channels
    bbox_head=dict(in_channels=neck_channels, feat_channels=neck_channels),
    aux_head=dict(in_channels=neck_channels * 2, feat_channels=neck_channels * 2))
