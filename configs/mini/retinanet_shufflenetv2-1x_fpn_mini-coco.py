# RetinaNet + ShuffleNet V2 1.0x + FPN on the synthetic mini COCO, trained from scratch on a CPU.
#
#   python tools/misc/make_mini_coco.py
#   python tools/train.py configs/mini/retinanet_shufflenetv2-1x_fpn_mini-coco.py
# or everything at once (dataset, training, COCO mAP, detections picture): python tools/main_job.py
#
# Compared with configs/retinanet_shufflenetv2.py: random init with trainable BN statistics, 4 classes, a narrower
# FPN/head (64 channels, 2 stacked convs), three pyramid levels whose anchors (24-152 px) cover the 14-96 px
# objects of 256x256 images, and a GIoU box loss.
_base_ = ['mmdet::_base_/models/retinanet_r50_fpn.py', './_base_/mini_coco.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='ShuffleNetV2',
        widen_factor=1.0,
        out_indices=(1, 2, 3),  # strides 8/16/32
        frozen_stages=-1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False,
        init_cfg=None),
    neck=dict(in_channels=[116, 232, 464], out_channels=64, start_level=0, add_extra_convs='on_input', num_outs=3),
    bbox_head=dict(
        num_classes=4,
        in_channels=64,
        feat_channels=64,
        stacked_convs=2,
        anchor_generator=dict(octave_base_scale=3, strides=[8, 16, 32]),
        # GIoU on the decoded boxes instead of L1 on the deltas: COCO mAP averages IoU 0.5-0.95, and GIoU
        # optimises the overlap directly (the gain is largest at high IoU).
        reg_decoded_bbox=True,
        loss_bbox=dict(_delete_=True, type='GIoULoss', loss_weight=2.0)))
