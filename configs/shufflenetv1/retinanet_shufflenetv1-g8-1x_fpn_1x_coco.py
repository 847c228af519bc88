# RetinaNet + ShuffleNet V1 (g=8, 1.0x) + FPN, COCO 1x. ImageNet weights (official Megvii Group8 1.0x model):
#   python tools/model_converters/convert_weights.py --src megvii --type ShuffleNetV1 --groups 8 --widen-factor 1.0 \
#       <Megvii ShuffleNetV1 g8 1.0x checkpoint> checkpoints/shufflenetv1_g8_x1.0_megvii.pth
_base_ = './retinanet_shufflenetv1-g3-1x_fpn_1x_coco.py'

model = dict(
    backbone=dict(
        groups=8, init_cfg=dict(type='Pretrained', checkpoint='checkpoints/shufflenetv1_g8_x1.0_megvii.pth')),
    neck=dict(in_channels=[384, 768, 1536]))  # = backbone.out_channels (stage2/3/4 of g8 1.0x)
