# RetinaNet + ShuffleNetV2+ Large + FPN, COCO 1x. ImageNet weights (official Megvii ShuffleNetV2+ Large):
#   python tools/model_converters/convert_weights.py --src megvii --type ShuffleNetV2Plus --arch Large \
#       <Megvii ShuffleNetV2+ Large checkpoint> checkpoints/shufflenetv2plus_large_megvii.pth
_base_ = './retinanet_shufflenetv2plus-small_fpn_1x_coco.py'

model = dict(
    backbone=dict(
        arch='Large', init_cfg=dict(type='Pretrained', checkpoint='checkpoints/shufflenetv2plus_large_megvii.pth')),
    neck=dict(in_channels=[168, 336, 672]))  # = backbone.out_channels (stages 2/3/4 of Large)
