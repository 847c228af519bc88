# RetinaNet + ShuffleNetV2+ Medium + FPN, COCO 1x. ImageNet weights (official Megvii ShuffleNetV2+ Medium):
#   python tools/model_converters/convert_weights.py --src megvii --type ShuffleNetV2Plus --arch Medium \
#       <Megvii ShuffleNetV2+ Medium checkpoint> checkpoints/shufflenetv2plus_medium_megvii.pth
_base_ = './retinanet_shufflenetv2plus-small_fpn_1x_coco.py'

model = dict(
    backbone=dict(
        arch='Medium', init_cfg=dict(type='Pretrained', checkpoint='checkpoints/shufflenetv2plus_medium_megvii.pth')),
    neck=dict(in_channels=[128, 256, 512]))  # = backbone.out_channels (stages 2/3/4 of Medium)
