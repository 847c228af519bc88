# Lite-l: ShuffleNet V2 1.5x, 128-channel GhostPAN and head, at 320x320 (NanoDet-Plus-m-1.5x's widths; it reports
# 29.9 COCO mAP at 320).
#   ImageNet weights: torchvision's shufflenetv2_x1_5-3c479a10.pth converted with --widen-factor 1.5.
_base_ = './lite-m_shufflenetv2-1x_300e_coco-320.py'

neck_channels = 128
model = dict(
    backbone=dict(
        widen_factor=1.5,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/shufflenetv2_x1.5_torchvision.pth')),
    neck=dict(in_channels=[176, 352, 704], out_channels=neck_channels),  # = backbone.out_channels
    bbox_head=dict(in_channels=neck_channels, feat_channels=neck_channels),
    aux_head=dict(in_channels=neck_channels * 2, feat_channels=neck_channels * 2))
