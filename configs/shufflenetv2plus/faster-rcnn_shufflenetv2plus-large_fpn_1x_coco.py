# Faster R-CNN + ShuffleNetV2+ Large + FPN, COCO 1x. ImageNet weights (official Megvii ShuffleNetV2+ Large):
#   named below: Megvii gives no direct link, so the first run says where to put the downloaded file (docs/backbones.md
#   "Weights"); it is converted and checked on first use.
_base_ = './faster-rcnn_shufflenetv2plus-small_fpn_1x_coco.py'

model = dict(
    backbone=dict(
        arch='Large', init_cfg=dict(type='Pretrained', checkpoint='shufflenet_det://megvii/shufflenet_v2_plus_large')),
    neck=dict(in_channels=[68, 168, 336, 672]))  # = backbone.out_channels (stages 1-4 of Large)
