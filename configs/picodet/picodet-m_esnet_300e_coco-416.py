# PP-PicoDet-M at 416 (legacy model zoo; PaddleDetection legacy_model/picodet_m_416_coco.yml): ESNet-M + CSPPAN 128
# + PicoHead (4 convs). Published: 2.15 M parameters, 2.50 GFLOPs; 34.8 mAP (0.5:0.95, COCO val). Batch 4 GPUs x 80.
_base_ = ['./_base_/picodet_esnet.py', './_base_/picodet_300e_coco.py']

image_size = (416, 416)
train_scales = [(s, s) for s in (352, 384, 416, 448, 480)]
train_batch_size_per_gpu = 80
auto_scale_lr = dict(base_batch_size=4 * train_batch_size_per_gpu)
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
