# Lite-m on DetNAS COCO-FPN-300M on the synthetic mini COCO: the mini lite-m recipe with
# configs/lite/lite-m_detnas-coco-fpn-300m_300e_coco-320.py's backbone.   python tools/main_job.py --model lite-detnas
_base_ = './lite-m_shufflenetv2-1x_mini-coco.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='DetNAS',
        arch='COCO-FPN-300M',
        out_indices=(1, 2, 3),  # strides 8/16/32
        norm_cfg={{_base_.norm_cfg}},
        init_cfg=None),
    neck=dict(in_channels=[160, 320, 640]))  # = backbone.out_channels
