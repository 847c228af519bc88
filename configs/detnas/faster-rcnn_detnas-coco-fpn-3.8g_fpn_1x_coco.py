# Faster R-CNN + DetNAS (COCO-FPN-3.8G) + FPN, COCO 1x. ImageNet weights (megvii-model/DetNAS),
#   named below: Megvii gives no direct link, so the first run says where to put the downloaded file (docs/backbones.md
#   "Weights"); it is converted and checked on first use.
_base_ = './faster-rcnn_detnas-coco-fpn-300m_fpn_1x_coco.py'

model = dict(
    backbone=dict(
        arch='COCO-FPN-3.8G',
        init_cfg=dict(type='Pretrained', checkpoint='shufflenet_det://megvii/detnas_coco-fpn-3.8g')),
    neck=dict(in_channels=[172, 432, 864, 1728]))  # = backbone.out_channels (stages 1-4 of COCO-FPN-3.8G)
