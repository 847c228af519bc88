# RetinaNet + DetNAS (the published COCO-FPN-300M encoding) + FPN on the synthetic mini COCO, from scratch on a CPU:
# the baseline of the mini DetNAS search, and the detector the found backbone is put into (its
# nas_search.subnet_config), so that the found and the published encodings train on exactly the same schedule.
#
#   python tools/main_job.py --config configs/nas/retinanet_detnas-coco-fpn-300m_fpn_mini-coco.py --target-map 0
_base_ = '../mini/retinanet_shufflenetv2-1x_fpn_mini-coco.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='DetNAS',
        arch='COCO-FPN-300M',
        out_indices=(1, 2, 3),  # strides 8/16/32: stages 2-4
        frozen_stages=-1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False,
        init_cfg=None),
    neck=dict(in_channels=[160, 320, 640]))  # = backbone.out_channels (stages 2-4 of the 300M layout)
