# PP-PicoDet-S at 320 (legacy model zoo; PaddleDetection legacy_model/picodet_s_320_coco.yml): ESNet-S (scale 0.75)
# + CSPPAN 96 + PicoHead (2 convs). Published: 0.99 M parameters, 0.73 GFLOPs at 320; 27.1 mAP (COCO val).
# Batch 4 GPUs x 128 at lr 0.4 (the recipe's defaults).
_base_ = ['./_base_/picodet_esnet.py', './_base_/picodet_300e_coco.py']

model = dict(
    backbone=dict(arch='S'),
    neck=dict(in_channels=[96, 192, 384], out_channels=96),
    bbox_head=dict(in_channels=96, stacked_convs=2))
