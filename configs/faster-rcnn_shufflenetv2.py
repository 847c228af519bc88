# Faster R-CNN + ShuffleNet V2 1.0x + FPN on COCO 2017, 1x schedule (12 epochs), 8 GPUs x 2 images.
#
#   bash tools/dist_train.sh configs/faster-rcnn_shufflenetv2.py 8
#
# ImageNet weights: see configs/retinanet_shufflenetv2.py (the same, shufflenet_det://torchvision/shufflenet_v2_x1_0).
_base_ = [
    'mmdet::_base_/models/faster-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    './_base_/shufflenet_runtime.py',
]

# BN with frozen statistics; SyncBN: --cfg-options model.backbone.norm_cfg.type=SyncBN model.backbone.norm_eval=False
norm_cfg = dict(type='BN', requires_grad=True)

model = dict(
    backbone=dict(
        _delete_=True,
        type='ShuffleNetV2',
        widen_factor=1.0,
        out_indices=(0, 1, 2, 3),  # strides 4/8/16/32: stem, stage2/3/4 (FPN P2-P5; P6 by max-pooling P5)
        frozen_stages=0,  # freeze everything at stride 4 (the stem), as mmdet's ResNet frozen_stages=1
        norm_cfg=norm_cfg,
        norm_eval=True,
        init_cfg=dict(type='Pretrained', checkpoint='shufflenet_det://torchvision/shufflenet_v2_x1_0')),
    # FPN in_channels must equal backbone.out_channels (stem + stage2/3/4 widths); family configs override both.
    neck=dict(in_channels=[24, 116, 232, 464]))

# mmdet's schedule_1x: SGD lr 0.02 for a total batch of 16; --auto-scale-lr rescales it for other batch sizes.
auto_scale_lr = dict(enable=False, base_batch_size=16)
