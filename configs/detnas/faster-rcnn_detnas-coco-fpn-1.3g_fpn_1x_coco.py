# Faster R-CNN + DetNAS (COCO-FPN-1.3G) + FPN, COCO 1x. ImageNet weights (megvii-model/DetNAS), converted:
#   python tools/model_converters/convert_weights.py --src megvii --type DetNAS --arch COCO-FPN-1.3G \
#       <Megvii DetNAS COCO-FPN-1.3G ImageNet checkpoint> checkpoints/detnas_coco-fpn-1.3g_megvii.pth
_base_ = './faster-rcnn_detnas-coco-fpn-300m_fpn_1x_coco.py'

model = dict(
    backbone=dict(
        arch='COCO-FPN-1.3G',
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/detnas_coco-fpn-1.3g_megvii.pth')),
    neck=dict(in_channels=[96, 240, 480, 960]))  # = backbone.out_channels (stages 1-4 of COCO-FPN-1.3G)
