# Faster R-CNN + ShuffleNet V2 1.5x + FPN, COCO 1x. ImageNet weights (torchvision):
#   wget https://download.pytorch.org/models/shufflenetv2_x1_5-3c479a10.pth
#   python tools/model_converters/convert_weights.py --src torchvision --type ShuffleNetV2 --widen-factor 1.5 \
#       shufflenetv2_x1_5-3c479a10.pth checkpoints/shufflenetv2_x1.5_torchvision.pth
_base_ = '../faster-rcnn_shufflenetv2.py'

model = dict(
    backbone=dict(
        widen_factor=1.5,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/shufflenetv2_x1.5_torchvision.pth')),
    neck=dict(in_channels=[24, 176, 352, 704]))  # = backbone.out_channels (stem + stage2/3/4 of ShuffleNet V2 1.5x)
