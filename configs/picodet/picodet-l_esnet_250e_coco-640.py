# PP-PicoDet-L at 640 (legacy model zoo; PaddleDetection legacy_model/picodet_l_640_coco.yml): ESNet-L (scale 1.25)
# + CSPPAN 160 + PicoHead (4 convs). Published: 3.30 M parameters, 8.91 GFLOPs; 40.9 mAP (COCO val).
# Paddle's settings: 250 epochs of a cosine schedule over 300, lr 0.3 for 4 GPUs x 32 images.
_base_ = ['./_base_/picodet_esnet.py', './_base_/picodet_300e_coco.py']

model = dict(
    backbone=dict(arch='L'),
    neck=dict(in_channels=[160, 320, 640], out_channels=160),
    bbox_head=dict(in_channels=160, stacked_convs=4))

image_size = (640, 640)
train_scales = [(s, s) for s in (576, 608, 640, 672, 704)]
train_batch_size_per_gpu = 32
base_lr = 0.3
max_epochs = 250
auto_scale_lr = dict(base_batch_size=4 * train_batch_size_per_gpu)
train_cfg = dict(max_epochs=max_epochs)
optim_wrapper = dict(optimizer=dict(lr=base_lr))
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
train_dataloader = dict(batch_size=train_batch_size_per_gpu, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
