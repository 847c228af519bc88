# Faster R-CNN + ShuffleNet V1 (g=3, 1.0x) + FPN, COCO 1x. Base of the ShuffleNet V1 Faster R-CNN configs.
# ImageNet weights: see retinanet_shufflenetv1-g3-1x_fpn_1x_coco.py (same checkpoint).
_base_ = '../faster-rcnn_shufflenetv2.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='ShuffleNetV1',
        groups=3,
        widen_factor=1.0,
        out_indices=(0, 1, 2, 3),  # strides 4/8/16/32: stem, stage2/3/4
        frozen_stages=0,  # the stem (everything at stride 4)
        norm_cfg={{_base_.norm_cfg}},
        norm_eval=True,
        init_cfg=dict(type='Pretrained', checkpoint='shufflenet_det://megvii/shufflenet_v1_g3_x1_0')),
    neck=dict(in_channels=[24, 240, 480, 960]))  # = backbone.out_channels (stem + stage2/3/4 of g3 1.0x)
