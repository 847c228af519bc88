# RetinaNet + ShuffleNet V2 1.0x + FPN on COCO 2017, 1x schedule (12 epochs), 8 GPUs x 2 images.
#
#   python tools/train.py configs/retinanet_shufflenetv2.py              # 1 GPU (or CPU)
#   bash tools/dist_train.sh configs/retinanet_shufflenetv2.py 8        # 8 GPUs, the schedule below
#
# ImageNet weights: torchvision's ShuffleNet V2 1.0x, converted into this project's layout,
#   named below: downloaded, checked (SHA-256), converted and cached on first use; offline: docs/backbones.md "Weights".
# Without network the first run stops before building anything and names the URL and the cache path to put the
# file at; to train from scratch instead pass --cfg-options model.backbone.init_cfg=None
# Data: data/coco/{annotations/instances_{train,val}2017.json, train2017/, val2017/} (see tools/train.py's error).
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    './_base_/shufflenet_runtime.py',
]

# BN with frozen statistics (norm_eval=True), as mmdet's ResNet detectors at 2 images per GPU. For SyncBN (the
# DetNAS recipe; needs a distributed launch on GPUs, mmengine reverts it to BN on a single process):
#   --cfg-options model.backbone.norm_cfg.type=SyncBN model.backbone.norm_eval=False
norm_cfg = dict(type='BN', requires_grad=True)

model = dict(
    backbone=dict(
        _delete_=True,
        type='ShuffleNetV2',
        widen_factor=1.0,
        out_indices=(1, 2, 3),  # strides 8/16/32: stage2/3/4 (RetinaNet's P3-P5; P6-P7 come from extra convs)
        frozen_stages=0,  # freeze everything at stride 4 (the stem), as mmdet's ResNet frozen_stages=1
        norm_cfg=norm_cfg,
        norm_eval=True,
        init_cfg=dict(type='Pretrained', checkpoint='shufflenet_det://torchvision/shufflenet_v2_x1_0')),
    # FPN in_channels must equal backbone.out_channels (the stage2/3/4 widths of the variant, see
    # docs/backbones.md table, tools/analysis_tools/get_flops.py --table); the family configs override both together.
    neck=dict(in_channels=[116, 232, 464], start_level=0, add_extra_convs='on_input', num_outs=5))

# lr 0.01 for a total batch of 16 (mmdet's RetinaNet). With another GPU count pass --auto-scale-lr: lr is then
# scaled linearly by (GPUs x batch per GPU) / auto_scale_lr.base_batch_size.
optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0001))
auto_scale_lr = dict(enable=False, base_batch_size=16)
