# DetNAS search on COCO 2017 in the 1.3G channel/repeat layout (stem 48, stages 96/240/480/960, repeats 8/8/16/8,
# 40 searched units); everything else as the 300M search (see that config for the commands).
_base_ = './faster-rcnn_detnas-supernet-300m_fpn_coco.py'

model = dict(
    backbone=dict(space='1.3G'),
    neck=dict(in_channels=[96, 240, 480, 960]))
nas_search = dict(
    flops_limit=1350e6,  # the published COCO-FPN-1.3G counts 1318.4M this way
    references=['COCO-FPN-1.3G'],
    subnet_config='../detnas/faster-rcnn_detnas-coco-fpn-1.3g_fpn_1x_coco.py')
