# RetinaNet + ShuffleNetV2+ Small + FPN, COCO 1x. Base of the ShuffleNetV2+ RetinaNet configs.
# ImageNet weights: the official Megvii ShuffleNetV2+ Small model (megvii-model/ShuffleNet-Series),
#   named below: Megvii gives no direct link, so the first run says where to put the downloaded file (docs/backbones.md
#   "Weights"); it is converted and checked on first use.
_base_ = '../retinanet_shufflenetv2.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='ShuffleNetV2Plus',
        arch='Small',
        out_indices=(1, 2, 3),  # strides 8/16/32: stages 2/3/4
        frozen_stages=0,  # stem + stage 1 (everything at stride 4)
        norm_cfg={{_base_.norm_cfg}},
        norm_eval=True,
        init_cfg=dict(type='Pretrained', checkpoint='shufflenet_det://megvii/shufflenet_v2_plus_small')),
    neck=dict(in_channels=[104, 208, 416]))  # = backbone.out_channels (stages 2/3/4 of Small)
