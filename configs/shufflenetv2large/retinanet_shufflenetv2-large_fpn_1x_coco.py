# RetinaNet + ShuffleNetV2.Large + FPN, COCO 1x. ImageNet weights (official megvii-model/ShuffleNet-Series
# ShuffleNetV2.Large; the auxiliary and ImageNet classifiers are dropped when it is converted):
#   named below: Megvii gives no direct link, so the first run says where to put the downloaded file (docs/backbones.md
#   "Weights"); it is converted and checked on first use.
# BN eps 1e-9 is the official one, which the converted weights need (SyncBN: model.backbone.norm_cfg.type=SyncBN).
# 125M backbone parameters: with_cp=True trades compute for activation memory.
_base_ = '../retinanet_shufflenetv2.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='ShuffleNetV2Large',
        arch='Large',
        out_indices=(1, 2, 3),  # strides 8/16/32: stages 2-4 (RetinaNet's P3-P5; P6-P7 from extra convs)
        frozen_stages=0,  # stem + stage 1 (everything at stride 4)
        norm_cfg=dict(type='BN', eps=1e-9, requires_grad=True),
        norm_eval=True,
        init_cfg=dict(type='Pretrained', checkpoint='shufflenet_det://megvii/shufflenet_v2_large')),
    neck=dict(in_channels=[512, 1024, 2048]))  # = backbone.out_channels (stages 2-4 of Large)
