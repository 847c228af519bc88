# RetinaNet + ShuffleNet V1 (g=3, 1.0x) + FPN, COCO 1x. Base of the ShuffleNet V1 RetinaNet configs.
# ImageNet weights: the official Megvii ShuffleNetV1 Group3 1.0x model (megvii-model/ShuffleNet-Series),
#   named below: Megvii gives no direct link, so the first run says where to put the downloaded file (docs/backbones.md
#   "Weights"); it is converted and checked on first use.
_base_ = '../retinanet_shufflenetv2.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='ShuffleNetV1',
        groups=3,
        widen_factor=1.0,
        out_indices=(1, 2, 3),  # strides 8/16/32: stage2/3/4
        frozen_stages=0,  # the stem (everything at stride 4)
        norm_cfg={{_base_.norm_cfg}},
        norm_eval=True,
        init_cfg=dict(type='Pretrained', checkpoint='shufflenet_det://megvii/shufflenet_v1_g3_x1_0')),
    neck=dict(in_channels=[240, 480, 960]))  # = backbone.out_channels (stage2/3/4 of g3 1.0x)
