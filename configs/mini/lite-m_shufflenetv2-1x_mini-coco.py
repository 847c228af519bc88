# Lite-m (ShuffleNet V2 1.0x + GhostPAN + depthwise GFL head, the NanoDet-Plus-m design) on the synthetic mini COCO,
# trained from scratch on a CPU.
#
#   python tools/main_job.py --model lite
#   python tools/train.py configs/mini/lite-m_shufflenetv2-1x_mini-coco.py      # after make_mini_coco.py
#
# Compared with configs/lite/lite-m_shufflenetv2-1x_300e_coco-320.py: random init, 4 classes, the mini data,
# pipeline and AdamW/cosine runtime of configs/mini/_base_/mini_coco.py (256x256 images, batch 8), a longer
# schedule than RetinaNet's (the lite network costs less per step), a lighter auxiliary head (2 x 128-channel convs
# instead of 4 x 192: it is training-only, and a step's cost on the CPU), and the auxiliary branch detached after
# a third of the schedule (NanoDet-Plus: epoch 10 of 300).
_base_ = ['../lite/_base_/lite-m_shufflenetv2-1x.py', './_base_/mini_coco.py']

num_classes = 4
model = dict(
    backbone=dict(init_cfg=None),
    bbox_head=dict(num_classes=num_classes),
    aux_head=dict(num_classes=num_classes, feat_channels=128, stacked_convs=2),
    detach_epoch=4)

max_epochs = 12
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', eta_min=2e-5, begin=0, end=max_epochs, by_epoch=True, convert_to_iter_based=True),
]
custom_hooks = [
    dict(type='EMAHook', ema_type='ExpMomentumEMA', momentum=0.0002, update_buffers=True, priority=49),
    dict(type='SetEpochInfoHook'),
]
