# Lite-s (ShuffleNet V2 0.5x, 64-channel GhostPAN and head) on the synthetic mini COCO: the mini lite-m recipe with
# configs/lite/lite-s_shufflenetv2-0.5x_300e_coco-320.py's widths.   python tools/main_job.py --model lite-s
_base_ = './lite-m_shufflenetv2-1x_mini-coco.py'

neck_channels = 64
model = dict(
    backbone=dict(widen_factor=0.5),
    neck=dict(in_channels=[48, 96, 192], out_channels=neck_channels),  # = backbone.out_channels
    bbox_head=dict(in_channels=neck_channels, feat_channels=neck_channels),
    aux_head=dict(in_channels=neck_channels * 2))
