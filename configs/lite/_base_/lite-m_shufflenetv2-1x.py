# The lite-m detector (the NanoDet-Plus-m design, RangiLyu 2021, inside mmdet): ShuffleNet V2 1.0x (LeakyReLU 0.1)
# + GhostPAN (96 channels, one extra stride-64 level) + per-level depthwise GFL head (QFL / DFL reg_max 7 / GIoU,
# DynamicSoftLabelAssigner top-k 13), and the training-only auxiliary neck + head that guide the assignment.
# The model only: configs/lite/*_coco-*.py add COCO data and the 300-epoch recipe, configs/mini/lite-* the mini COCO.
num_classes = 80
neck_channels = 96
act_cfg = dict(type='LeakyReLU', negative_slope=0.1)
norm_cfg = dict(type='BN', requires_grad=True)
strides = [8, 16, 32, 64]  # the three backbone outputs and GhostPAN's extra level

model = dict(
    type='LiteDetector',
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        # BGR images normalised with the ImageNet statistics in BGR order (NanoDet's convention)
        mean=[103.53, 116.28, 123.675],
        std=[57.375, 57.12, 58.395],
        bgr_to_rgb=False,
        pad_size_divisor=32),  # GhostPAN's x2 upsampling needs sizes divisible by the coarsest backbone stride
    backbone=dict(
        type='ShuffleNetV2',
        widen_factor=1.0,
        out_indices=(1, 2, 3),  # strides 8/16/32; conv5 is not used (kept frozen for the checkpoint, dropped at deploy)
        frozen_stages=-1,
        norm_cfg=norm_cfg,
        act_cfg=act_cfg,
        init_cfg=dict(type='Pretrained', checkpoint='shufflenet_det://torchvision/shufflenet_v2_x1_0')),
    neck=dict(
        type='GhostPAN',
        in_channels=[116, 232, 464],  # = backbone.out_channels
        out_channels=neck_channels,
        kernel_size=5,
        num_extra_level=1,
        use_depthwise=True,
        norm_cfg=norm_cfg,
        act_cfg=act_cfg),
    bbox_head=dict(
        type='LiteGFLHead',
        num_classes=num_classes,
        in_channels=neck_channels,
        feat_channels=neck_channels,
        stacked_convs=2,
        kernel_size=5,
        strides=strides,
        reg_max=7,
        norm_cfg=norm_cfg,
        act_cfg=act_cfg,
        loss_cls=dict(type='QualityFocalLoss', use_sigmoid=True, beta=2.0, loss_weight=1.0),
        loss_dfl=dict(type='DistributionFocalLoss', loss_weight=0.25),
        loss_bbox=dict(type='GIoULoss', loss_weight=2.0)),
    # training only: reads concat(neck, copy of the neck) = 2 x neck_channels; absent at test and export time
    aux_head=dict(
        type='LiteAuxHead',
        num_classes=num_classes,
        in_channels=neck_channels * 2,
        feat_channels=neck_channels * 2,
        stacked_convs=4,
        strides=strides,
        reg_max=7,
        norm_cfg=dict(type='GN', num_groups=32, requires_grad=True),
        act_cfg=act_cfg),
    detach_epoch=10,
    train_cfg=dict(assigner=dict(type='DynamicSoftLabelAssigner', topk=13, iou_weight=3.0)),
    test_cfg=dict(nms_pre=1000, min_bbox_size=0, score_thr=0.05, nms=dict(type='nms', iou_threshold=0.6),
                  max_per_img=100))
