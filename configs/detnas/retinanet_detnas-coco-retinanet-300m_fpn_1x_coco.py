# RetinaNet + DetNAS (COCO-RetinaNet-300M, the backbone DetNAS searched for RetinaNet on COCO) + FPN, COCO 1x.
# ImageNet weights: the DetNAS authors' ImageNet-trained COCO-RetinaNet-300M backbone (megvii-model/DetNAS),
#   named below: Megvii gives no direct link, so the first run says where to put the downloaded file (docs/backbones.md
#   "Weights"); it is converted and checked on first use.
# The paper trains with SyncBN (see configs/retinanet_shufflenetv2.py for the switch).
_base_ = '../retinanet_shufflenetv2.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='DetNAS',
        arch='COCO-RetinaNet-300M',
        out_indices=(1, 2, 3),  # strides 8/16/32: stages 2/3/4
        frozen_stages=0,  # stem + stage 1 (everything at stride 4)
        norm_cfg={{_base_.norm_cfg}},
        norm_eval=True,
        init_cfg=dict(type='Pretrained', checkpoint='shufflenet_det://megvii/detnas_coco-retinanet-300m')),
    neck=dict(in_channels=[160, 320, 640]))  # = backbone.out_channels (stages 2/3/4 of the 300M search space)
