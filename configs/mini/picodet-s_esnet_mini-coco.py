# PP-PicoDet-S (ESNet-S + CSPPAN 96 + PicoHead, legacy model zoo design) on the synthetic mini COCO, trained from
# scratch on a CPU.
#
#   python tools/main_job.py --model picodet-s
#   python tools/train.py configs/mini/picodet-s_esnet_mini-coco.py      # after make_mini_coco.py
#
# Compared with configs/picodet/picodet-s_esnet_300e_coco-320.py: 4 classes, random init, the mini data, pipeline,
# AdamW / cosine runtime and 8-epoch schedule of configs/mini/_base_/mini_coco.py (256x256 images, batch 8: what
# every mini config shares), and the EMA of the COCO recipe.
_base_ = ['../picodet/_base_/picodet_esnet.py', './_base_/mini_coco.py']

num_classes = 4
model = dict(
    backbone=dict(arch='S'),
    neck=dict(in_channels=[96, 192, 384], out_channels=96),
    bbox_head=dict(num_classes=num_classes, in_channels=96, stacked_convs=2))

custom_hooks = [dict(type='EMAHook', ema_type='ExpMomentumEMA', momentum=0.0002, update_buffers=True, priority=49)]
