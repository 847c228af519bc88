# Faster R-CNN + DetNAS (COCO-FPN-3.8G) + FPN, COCO 1x. ImageNet weights (megvii-model/DetNAS), converted:
#   python tools/model_converters/convert_weights.py --src megvii --type DetNAS --arch COCO-FPN-3.8G \
#       <Megvii DetNAS COCO-FPN-3.8G ImageNet checkpoint> checkpoints/detnas_coco-fpn-3.8g_megvii.pth
_base_ = './faster-rcnn_detnas-coco-fpn-300m_fpn_1x_coco.py'

model = dict(
    backbone=dict(
        arch='COCO-FPN-3.8G',
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/detnas_coco-fpn-3.8g_megvii.pth')),
    neck=dict(in_channels=[172, 432, 864, 1728]))  # = backbone.out_channels (stages 1-4 of COCO-FPN-3.8G)
