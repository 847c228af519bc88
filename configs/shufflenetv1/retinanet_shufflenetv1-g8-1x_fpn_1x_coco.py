# RetinaNet + ShuffleNet V1 (g=8, 1.0x) + FPN, COCO 1x. ImageNet weights (official Megvii Group8 1.0x model):
#   named below: Megvii gives no direct link, so the first run says where to put the downloaded file (docs/backbones.md
#   "Weights"); it is converted and checked on first use.
_base_ = './retinanet_shufflenetv1-g3-1x_fpn_1x_coco.py'

model = dict(
    backbone=dict(
        groups=8, init_cfg=dict(type='Pretrained', checkpoint='shufflenet_det://megvii/shufflenet_v1_g8_x1_0')),
    neck=dict(in_channels=[384, 768, 1536]))  # = backbone.out_channels (stage2/3/4 of g8 1.0x)
