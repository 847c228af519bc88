# Faster R-CNN + ShuffleNetV2+ Medium + FPN, COCO 1x. ImageNet weights (official Megvii ShuffleNetV2+ Medium):
#   named below: Megvii gives no direct link, so the first run says where to put the downloaded file (docs/backbones.md
#   "Weights"); it is converted and checked on first use.
_base_ = './faster-rcnn_shufflenetv2plus-small_fpn_1x_coco.py'

model = dict(
    backbone=dict(
        arch='Medium',
        init_cfg=dict(type='Pretrained', checkpoint='shufflenet_det://megvii/shufflenet_v2_plus_medium')),
    neck=dict(in_channels=[48, 128, 256, 512]))  # = backbone.out_channels (stages 1-4 of Medium)
