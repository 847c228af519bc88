# Faster R-CNN + DetNAS (COCO-FPN-300M, the backbone DetNAS searched for FPN on COCO) + FPN, COCO 1x.
# Base of the DetNAS Faster R-CNN configs. ImageNet weights (megvii-model/DetNAS),
#   named below: Megvii gives no direct link, so the first run says where to put the downloaded file (docs/backbones.md
#   "Weights"); it is converted and checked on first use.
# The paper trains with SyncBN (see configs/retinanet_shufflenetv2.py for the switch).
_base_ = '../faster-rcnn_shufflenetv2.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='DetNAS',
        arch='COCO-FPN-300M',
        out_indices=(0, 1, 2, 3),  # strides 4/8/16/32: stages 1/2/3/4
        frozen_stages=0,  # stem + stage 1 (everything at stride 4)
        norm_cfg={{_base_.norm_cfg}},
        norm_eval=True,
        init_cfg=dict(type='Pretrained', checkpoint='shufflenet_det://megvii/detnas_coco-fpn-300m')),
    neck=dict(in_channels=[64, 160, 320, 640]))  # = backbone.out_channels (stages 1-4 of COCO-FPN-300M)
