# PP-PicoDet (legacy 2021.10 model zoo; Yu et al., arXiv 2111.00902; PaddleDetection release 2.6,
# configs/picodet/legacy_model/_base_/picodet_esnet.yml) in mmdet: ESNet + CSPPAN (4 levels) + PicoHead
# (shared class / box tower of depthwise-separable convs, GFL outputs reg_max 7, cell-centre points, VarifocalLoss /
# DFL / GIoU, SimOTA). The model of PicoDet-M; -S / -L / the ShuffleNet V2 variant change the widths below.
# The model only: configs/picodet/*_coco-*.py add COCO data and the recipe (./picodet_300e_coco.py).
num_classes = 80
neck_channels = 128  # CSPPAN out_channels = PicoFeat feat_in / feat_out = PicoHead feat_in_chan
act_cfg = dict(type='HSwish')  # Paddle's hard_swish: the CSPPAN and PicoFeat default, which the configs keep

model = dict(
    type='SingleStageDetector',
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        # Paddle's NormalizeImage (is_scale, ImageNet mean / std in RGB) on 0-255 images
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=32),  # Paddle's PadBatch pad_to_stride 32 (CSPPAN's x2 upsampling needs it)
    backbone=dict(
        type='ESNet',
        arch='M',  # scale 1.0 and the searched channel_ratio of picodet_esnet.yml; feature_maps [4, 11, 14]
        out_indices=(1, 2, 3),
        act_cfg=act_cfg),
    neck=dict(
        type='CSPPAN',
        in_channels=[128, 256, 512],  # = backbone.out_channels
        out_channels=neck_channels,
        kernel_size=5,
        num_features=4,  # the extra stride-64 level
        num_csp_blocks=1,
        use_depthwise=True,
        act_cfg=act_cfg),
    bbox_head=dict(
        type='PicoHead',
        num_classes=num_classes,
        in_channels=neck_channels,
        stacked_convs=4,  # PicoFeat num_convs
        kernel_size=5,
        strides=[8, 16, 32, 64],
        reg_max=7,
        share_cls_reg=True,
        cell_offset=0.5,
        prior_prob=0.01,
        norm_cfg=dict(type='BN', requires_grad=True),
        act_cfg=act_cfg,
        loss_cls=dict(type='VarifocalLoss', use_sigmoid=True, alpha=0.75, gamma=2.0, iou_weighted=True,
                      loss_weight=1.0),
        loss_dfl=dict(type='DistributionFocalLoss', loss_weight=0.25),
        loss_bbox=dict(type='GIoULoss', loss_weight=2.0)),
    # Paddle's SimOTAAssigner(candidate_topk=10, iou_weight=6, center_radius 2.5). mmdet's assigner costs
    # BCE(score, one-hot) - log(IoU) where Paddle (use_vfl=True) costs VFL + (1 - GIoU): see PicoHead's docstring.
    train_cfg=dict(assigner=dict(type='SimOTAAssigner', center_radius=2.5, candidate_topk=10, iou_weight=6.0,
                                 cls_weight=1.0)),
    # Paddle's MultiClassNMS(nms_top_k 1000, keep_top_k 100, score_threshold 0.025, nms_threshold 0.6) after
    # GFLHead's per-level top nms_pre=1000 points (by max class score); no box-size filter (min_bbox_size=-1).
    test_cfg=dict(nms_pre=1000, score_thr=0.025, nms=dict(type='nms', iou_threshold=0.6), nms_top_k=1000,
                  max_per_img=100, min_bbox_size=-1))
