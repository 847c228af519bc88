# mmdet's RetinaNet with a ResNet-18 backbone on the synthetic mini COCO: the side-by-side reference for
# retinanet_shufflenetv2-1x_fpn_mini-coco.py, with the same data, schedule, FPN and head; only the backbone differs
# (random init as well: no ImageNet weights here).
#   python tools/analysis_tools/side_by_side.py
_base_ = './retinanet_shufflenetv2-1x_fpn_mini-coco.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='ResNet',
        depth=18,
        num_stages=4,
        out_indices=(1, 2, 3),  # strides 8/16/32, the levels the ShuffleNet config feeds its FPN
        frozen_stages=-1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False,
        style='pytorch',
        init_cfg=None),
    neck=dict(in_channels=[128, 256, 512]))  # = ResNet-18 layer2/3/4 channels
