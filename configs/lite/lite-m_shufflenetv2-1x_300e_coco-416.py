# Lite-m at 416x416 = the official NanoDet-Plus-m 416 (30.4 COCO mAP published): the 320 config with the input size
# changed (and the test-time top-k sized for it).
_base_ = './lite-m_shufflenetv2-1x_300e_coco-320.py'

image_size = (416, 416)
# the test-time top-k keeps every (point, class) pair of the finest level at this size (see the 320 config)
model = dict(test_cfg=dict(nms_pre=(image_size[0] // 8) * (image_size[1] // 8) * 80))
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=image_size, keep_ratio=False),
    dict(type='RandomAffine', max_rotate_degree=0.0, max_translate_ratio=0.2, scaling_ratio_range=(0.6, 1.4),
         max_shear_degree=0.0),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion', brightness_delta=51, contrast_range=(0.6, 1.4),
         saturation_range=(0.5, 1.2), hue_delta=0),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(1, 1), keep_empty=False),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='Resize', scale=image_size, keep_ratio=False),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
