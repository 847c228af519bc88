# Lite-m: ShuffleNet V2 1.0x + GhostPAN + depthwise GFL head at 320x320, COCO 2017, 300 epochs: the reference point
# of the lite family (the NanoDet-Plus-m design, inside mmdet; NanoDet-Plus-m reports 27.0 COCO mAP at 320).
#
#   python tools/train.py configs/lite/lite-m_shufflenetv2-1x_300e_coco-320.py          # 1 GPU x 96 images
#   bash tools/dist_train.sh configs/lite/lite-m_shufflenetv2-1x_300e_coco-320.py 4 --auto-scale-lr
#
# ImageNet weights: torchvision's ShuffleNet V2 1.0x in this project's layout (the backbone runs
# LeakyReLU(0.1) on them, as NanoDet-Plus does):
#   named below: downloaded, checked (SHA-256), converted and cached on first use; offline: docs/backbones.md "Weights".
# At test and export time the auxiliary neck + head are absent: 1.19 M parameters, 0.45 G multiply-adds at 320
# (`python tools/analysis_tools/get_flops.py configs/lite/lite-m_shufflenetv2-1x_300e_coco-320.py --deploy`).
_base_ = [
    './_base_/lite-m_shufflenetv2-1x.py',
    'mmdet::_base_/datasets/coco_detection.py',
    '../_base_/shufflenet_runtime.py',
]

image_size = (320, 320)

# The official network (NanoDet-Plus-m at 320; its published weights convert with
#   python tools/model_converters/convert_weights.py --src nanodet --config THIS_CONFIG IN OUT):
# * the backbone has no conv5 (NanoDet's with_last_conv=False): ImageNet checkpoints' conv5.* keys are reported as
#   unexpected by the Pretrained init and ignored;
# * test settings of NanoDet-Plus's post-processing: boxes decoded from the points (no offset) and clipped to the
#   input, (point, class) pairs scoring > 0.05, class-aware NMS at IoU 0.6, the 100 best. NanoDet has no top-k
#   before NMS and no box-size filter. nms_pre (a per-level top-k, which the exports' fixed-size graphs need) is the
#   number of (point, class) pairs of the finest level, (320 / 8)^2 x 80 classes: every level has at most that many,
#   so the top-k keeps every candidate and drops nothing NanoDet keeps. min_bbox_size=-1: no size filter.
model = dict(
    backbone=dict(with_conv5=False),
    test_cfg=dict(nms_pre=(image_size[0] // 8) * (image_size[1] // 8) * 80, min_bbox_size=-1, score_thr=0.05,
                  nms=dict(type='nms', iou_threshold=0.6), max_per_img=100))

# NanoDet-Plus augmentation: random scale 0.6-1.4 and translation 0.2 (affine), horizontal flip, brightness /
# contrast / saturation jitter; no mosaic. Images are stretched to the square input (keep_ratio=False).
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=image_size, keep_ratio=False),
    dict(type='RandomAffine', max_rotate_degree=0.0, max_translate_ratio=0.2, scaling_ratio_range=(0.6, 1.4),
         max_shear_degree=0.0),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion', brightness_delta=51, contrast_range=(0.6, 1.4),
         saturation_range=(0.5, 1.2), hue_delta=0),  # brightness 0.2 x 255
    dict(type='FilterAnnotations', min_gt_bbox_wh=(1, 1), keep_empty=False),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='Resize', scale=image_size, keep_ratio=False),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]

# Batch and learning rate, written once: 96 images per step (NanoDet-Plus: 1 GPU x 96) at lr 1e-3. With another
# total batch pass --auto-scale-lr: lr is then scaled by (GPUs x batch per GPU) / base_batch_size.
train_batch_size_per_gpu = 96
base_lr = 1e-3
auto_scale_lr = dict(enable=False, base_batch_size=96)

train_dataloader = dict(
    batch_size=train_batch_size_per_gpu,
    num_workers=8,
    persistent_workers=True,
    dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=8, num_workers=4, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

max_epochs = 300
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=10)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=base_lr, weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0),
    clip_grad=dict(max_norm=35, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=False, begin=0, end=500),  # 500-iteration warm-up
    dict(type='CosineAnnealingLR', eta_min=5e-5, begin=0, end=max_epochs, T_max=max_epochs, by_epoch=True,
         convert_to_iter_based=True),
]

custom_hooks = [
    # EMA of the weights, decay 0.9998 after an exponential warm-up (mmdet's ExpMomentumEMA)
    dict(type='EMAHook', ema_type='ExpMomentumEMA', momentum=0.0002, update_buffers=True, priority=49),
    # tells LiteDetector the epoch (its auxiliary branch reads detached features from detach_epoch on)
    dict(type='SetEpochInfoHook'),
]
default_hooks = dict(checkpoint=dict(interval=10, max_keep_ckpts=3, save_best='auto'))
