# Lite-m (ShuffleNet V2 1.0x + GhostPAN + depthwise GFL head, the NanoDet-Plus-m design) on the synthetic mini COCO,
# trained from scratch on a CPU.
#
#   python tools/main_job.py --model lite
#   python tools/train.py configs/mini/lite-m_shufflenetv2-1x_mini-coco.py      # after make_mini_coco.py
#
# Compared with configs/lite/lite-m_shufflenetv2-1x_300e_coco-320.py: random init, 4 classes, the mini data,
# pipeline, AdamW/cosine runtime and 8-epoch schedule of configs/mini/_base_/mini_coco.py (256x256 images, batch 8:
# the RetinaNet main job's), a lighter auxiliary head (2 x 128-channel convs instead of 4 x 192: it is training-only,
# and a step's cost on the CPU), the auxiliary branch detached after 3 of the 8 epochs (NanoDet-Plus: 10 of 300) and
# the EMA of the COCO recipe.
_base_ = ['../lite/_base_/lite-m_shufflenetv2-1x.py', './_base_/mini_coco.py']

num_classes = 4
model = dict(
    backbone=dict(init_cfg=None),
    bbox_head=dict(num_classes=num_classes),
    aux_head=dict(num_classes=num_classes, feat_channels=128, stacked_convs=2),
    detach_epoch=3)

custom_hooks = [
    dict(type='EMAHook', ema_type='ExpMomentumEMA', momentum=0.0002, update_buffers=True, priority=49),
    dict(type='SetEpochInfoHook'),
]
