# Faster R-CNN + ShuffleNet V2 1.0x + FPN on the synthetic mini COCO, trained from scratch on a CPU.
#
#   python tools/main_job.py --model faster-rcnn
#   python tools/train.py configs/mini/faster-rcnn_shufflenetv2-1x_fpn_mini-coco.py      # after make_mini_coco.py
#
# Compared with configs/faster-rcnn_shufflenetv2.py: random init with trainable BN statistics, 4 classes, a
# 64-channel FPN over P2-P5 with 24-192 px anchors for the 14-96 px objects of 256x256 images, and fewer
# proposals/RoIs and a narrower box head so that it trains in minutes on two CPU cores.
_base_ = ['mmdet::_base_/models/faster-rcnn_r50_fpn.py', './_base_/mini_coco.py']

fpn_channels = 64
model = dict(
    backbone=dict(
        _delete_=True,
        type='ShuffleNetV2',
        widen_factor=1.0,
        out_indices=(0, 1, 2, 3),  # strides 4/8/16/32
        frozen_stages=-1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False,
        init_cfg=None),
    neck=dict(in_channels=[24, 116, 232, 464], out_channels=fpn_channels, num_outs=4),
    rpn_head=dict(
        in_channels=fpn_channels,
        feat_channels=fpn_channels,
        anchor_generator=dict(scales=[6], strides=[4, 8, 16, 32])),
    roi_head=dict(
        # 2x2 samples per RoI bin instead of an adaptive count: RoIAlign (forward + backward) was a quarter of a
        # CPU training step with the adaptive default
        bbox_roi_extractor=dict(roi_layer=dict(sampling_ratio=2), out_channels=fpn_channels,
                                featmap_strides=[4, 8, 16, 32]),
        bbox_head=dict(in_channels=fpn_channels, fc_out_channels=256, num_classes=4)),
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=500, max_per_img=200),  # CPU NMS is quadratic in the boxes it gets
        rcnn=dict(sampler=dict(num=64))),  # RoIs per image (positives: at most a quarter, 2-5 objects here)
    test_cfg=dict(rpn=dict(nms_pre=300, max_per_img=100)))
