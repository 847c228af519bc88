# Faster R-CNN + ShuffleNet V2 2.0x + FPN, COCO 1x. ImageNet weights (torchvision):
#   wget https://download.pytorch.org/models/shufflenetv2_x2_0-8be3c8ee.pth
#   python tools/model_converters/convert_weights.py --src torchvision --type ShuffleNetV2 --widen-factor 2.0 \
#       shufflenetv2_x2_0-8be3c8ee.pth checkpoints/shufflenetv2_x2.0_torchvision.pth
_base_ = '../faster-rcnn_shufflenetv2.py'

model = dict(
    backbone=dict(
        widen_factor=2.0,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/shufflenetv2_x2.0_torchvision.pth')),
    neck=dict(in_channels=[24, 244, 488, 976]))  # = backbone.out_channels (stem + stage2/3/4 of ShuffleNet V2 2.0x)
