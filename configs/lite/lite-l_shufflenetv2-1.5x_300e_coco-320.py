# Lite-l: ShuffleNet V2 1.5x, 128-channel GhostPAN and head, at 320x320 = the official NanoDet-Plus-m-1.5x 320 (29.9
# COCO mAP published); its weights convert with `convert_weights.py --src nanodet --config THIS_CONFIG IN OUT`.
#   ImageNet weights: torchvision's 1.5x, named below (fetched and converted on first use; docs/backbones.md "Weights").
_base_ = './lite-m_shufflenetv2-1x_300e_coco-320.py'

neck_channels = 128
model = dict(
    backbone=dict(
        widen_factor=1.5,
        init_cfg=dict(type='Pretrained', checkpoint='shufflenet_det://torchvision/shufflenet_v2_x1_5')),
    neck=dict(in_channels=[176, 352, 704], out_channels=neck_channels),  # = backbone.out_channels
    bbox_head=dict(in_channels=neck_channels, feat_channels=neck_channels),
    aux_head=dict(in_channels=neck_channels * 2, feat_channels=neck_channels * 2))
