# PP-PicoDet with ShuffleNet V2 1.0x at 416 (legacy model zoo; PaddleDetection
# legacy_model/more_config/picodet_shufflenetv2_1x_416_coco.yml): the PicoDet-S neck / head widths (CSPPAN 96,
# PicoHead 2 convs, hard swish) on ShuffleNet V2 1.0x with Paddle's leaky_relu (slope 0.01), feature_maps
# [5, 13, 17] = stages 2-4, no last conv. Published: 1.17 M parameters, 1.53 GFLOPs; 30.0 mAP (COCO val).
_base_ = ['./picodet-m_esnet_300e_coco-416.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='ShuffleNetV2',
        widen_factor=1.0,
        out_indices=(1, 2, 3),
        with_conv5=False,
        act_cfg=dict(type='LeakyReLU', negative_slope=0.01)),
    neck=dict(in_channels=[116, 232, 464], out_channels=96),
    bbox_head=dict(in_channels=96, stacked_convs=2))
