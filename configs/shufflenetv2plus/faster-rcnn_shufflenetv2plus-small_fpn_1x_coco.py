# Faster R-CNN + ShuffleNetV2+ Small + FPN, COCO 1x. Base of the ShuffleNetV2+ Faster R-CNN configs.
# ImageNet weights: see retinanet_shufflenetv2plus-small_fpn_1x_coco.py (same checkpoint).
_base_ = '../faster-rcnn_shufflenetv2.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='ShuffleNetV2Plus',
        arch='Small',
        out_indices=(0, 1, 2, 3),  # strides 4/8/16/32: stages 1/2/3/4
        frozen_stages=0,  # stem + stage 1 (everything at stride 4)
        norm_cfg={{_base_.norm_cfg}},
        norm_eval=True,
        init_cfg=dict(type='Pretrained', checkpoint='shufflenet_det://megvii/shufflenet_v2_plus_small')),
    neck=dict(in_channels=[36, 104, 208, 416]))  # = backbone.out_channels (stages 1-4 of Small)
