# Lite-l (ShuffleNet V2 1.5x, 128-channel GhostPAN and head) on the synthetic mini COCO: the mini lite-m recipe with
# configs/lite/lite-l_shufflenetv2-1.5x_300e_coco-320.py's widths.   python tools/main_job.py --model lite-l
_base_ = './lite-m_shufflenetv2-1x_mini-coco.py'

neck_channels = 128
model = dict(
    backbone=dict(widen_factor=1.5),
    neck=dict(in_channels=[176, 352, 704], out_channels=neck_channels),  # = backbone.out_channels
    bbox_head=dict(in_channels=neck_channels, feat_channels=neck_channels),
    aux_head=dict(in_channels=neck_channels * 2))
