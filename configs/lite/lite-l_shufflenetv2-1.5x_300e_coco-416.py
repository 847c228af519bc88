# Lite-l at 416x416 = the official NanoDet-Plus-m-1.5x 416 (34.1 COCO mAP published): lite-m 416's input size, test
# settings and recipe with lite-l's widths (ShuffleNet V2 1.5x, 128-channel GhostPAN and head; the model of
# lite-l_shufflenetv2-1.5x_300e_coco-320.py).
#   Official weights: python tools/model_converters/convert_weights.py --src nanodet --config THIS_CONFIG \
#       nanodet-plus-m-1.5x_416_checkpoint.ckpt checkpoints/lite-l_416_nanodet.pth
_base_ = './lite-m_shufflenetv2-1x_300e_coco-416.py'

width = 128  # GhostPAN and head channels; the auxiliary head reads twice that
model = dict(
    backbone=dict(
        widen_factor=1.5,
        init_cfg=dict(type='Pretrained', checkpoint='shufflenet_det://torchvision/shufflenet_v2_x1_5')),
    neck=dict(in_channels=[176, 352, 704], out_channels=width),  # = backbone.out_channels
    bbox_head=dict(in_channels=width, feat_channels=width),
    aux_head=dict(in_channels=2 * width, feat_channels=2 * width))
