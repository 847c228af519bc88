# Faster R-CNN + ShuffleNet V1 (g=8, 1.0x) + FPN, COCO 1x.
# ImageNet weights: see retinanet_shufflenetv1-g8-1x_fpn_1x_coco.py (same checkpoint).
_base_ = './faster-rcnn_shufflenetv1-g3-1x_fpn_1x_coco.py'

model = dict(
    backbone=dict(
        groups=8, init_cfg=dict(type='Pretrained', checkpoint='shufflenet_det://megvii/shufflenet_v1_g8_x1_0')),
    neck=dict(in_channels=[24, 384, 768, 1536]))  # = backbone.out_channels (stem + stage2/3/4 of g8 1.0x)
