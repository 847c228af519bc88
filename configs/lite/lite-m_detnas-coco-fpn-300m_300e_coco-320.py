# Lite-m on a searched backbone: DetNAS COCO-FPN-300M (Chen et al., arXiv 1903.10979) + GhostPAN + GFL head at
# 320x320, the lite-m recipe. The backbone keeps its published activations (ReLU).
#   ImageNet weights: the official DetNAS checkpoint,
#   named below: Megvii gives no direct link, so the first run says where to put the downloaded file (docs/backbones.md
#   "Weights"); it is converted and checked on first use.
_base_ = './lite-m_shufflenetv2-1x_300e_coco-320.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='DetNAS',
        arch='COCO-FPN-300M',
        out_indices=(1, 2, 3),  # strides 8/16/32
        norm_cfg={{_base_.norm_cfg}},
        init_cfg=dict(type='Pretrained', checkpoint='shufflenet_det://megvii/detnas_coco-fpn-300m')),
    neck=dict(in_channels=[160, 320, 640]))  # = backbone.out_channels
