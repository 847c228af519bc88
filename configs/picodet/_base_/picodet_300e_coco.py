# The legacy PP-PicoDet COCO recipe, written once (PaddleDetection release 2.6, configs/picodet/legacy_model/_base_/
# optimizer_300e.yml, picodet_320_reader.yml, the model configs' use_ema / cycle_epoch): 300 epochs, SGD momentum 0.9
# with L2 4e-5 (Paddle's coupled L2 regularizer = SGD weight decay), lr 0.4 for 4 GPUs x 128 images (the reader's
# batch_size is per GPU; the legacy README says "4 or 8 GPUs", not which: 4 assumed), linear warm-up from 0.1 x lr
# over 300 iterations, cosine decay to 0 over 300 epochs (by iteration), EMA of the weights (decay 0.9998).
# Augmentation: SSD-style random crop (Paddle's RandomCrop; mmdet's MinIoURandomCrop is the same idea, its IoU
# thresholds lack Paddle's 0.0), horizontal flip,
# photometric distortion, a random square size per image from `train_scales` (Paddle: per batch, random
# interpolation), stretched (keep_ratio=False). Test: stretched to `image_size`, bicubic (Paddle interp 2).
# The leaves set image_size, train_scales and the batch; not reproduced: Paddle resets its EMA every cycle_epoch=40
# epochs, the head's BN parameters have no L2 in Paddle while the neck's have (here: no decay on norms and biases of
# the head only would need per-module rules; all parameters decay like Paddle's neck).
_base_ = [
    'mmdet::_base_/datasets/coco_detection.py',
    '../../_base_/shufflenet_runtime.py',
]

image_size = (320, 320)
train_scales = [(s, s) for s in (256, 288, 320, 352, 384)]  # image_size +- 2 x 32

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='MinIoURandomCrop'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='RandomChoiceResize', scales=train_scales, keep_ratio=False),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(1, 1), keep_empty=False),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='Resize', scale=image_size, keep_ratio=False, interpolation='bicubic'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]

num_gpus = 4
train_batch_size_per_gpu = 128
base_lr = 0.4
# --auto-scale-lr rescales lr by (GPUs x batch per GPU) / base_batch_size for another total batch
auto_scale_lr = dict(enable=False, base_batch_size=num_gpus * train_batch_size_per_gpu)

train_dataloader = dict(
    batch_size=train_batch_size_per_gpu,
    num_workers=6,
    persistent_workers=True,
    batch_sampler=None,  # images are stretched to squares: no aspect-ratio grouping
    dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=8, num_workers=4, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

max_epochs = 300
cosine_epochs = 300  # Paddle's CosineDecay max_epochs (PicoDet-L 640 stops at 250 of them)
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=10)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=base_lr, momentum=0.9, weight_decay=4e-5))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=300),  # 300-iteration warm-up
    dict(type='CosineAnnealingLR', eta_min=0.0, begin=0, end=cosine_epochs, T_max=cosine_epochs, by_epoch=True,
         convert_to_iter_based=True),
]

custom_hooks = [
    # EMA of the weights, decay 0.9998 (Paddle's ema_decay default) after mmdet's exponential warm-up
    dict(type='EMAHook', ema_type='ExpMomentumEMA', momentum=0.0002, update_buffers=True, priority=49),
]
default_hooks = dict(checkpoint=dict(interval=10, max_keep_ckpts=3, save_best='auto'))
