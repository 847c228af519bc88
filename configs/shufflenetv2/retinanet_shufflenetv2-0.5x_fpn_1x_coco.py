# RetinaNet + ShuffleNet V2 0.5x + FPN, COCO 1x. ImageNet weights (torchvision):
#   wget https://download.pytorch.org/models/shufflenetv2_x0.5-f707e7126e.pth
#   python tools/model_converters/convert_weights.py --src torchvision --type ShuffleNetV2 --widen-factor 0.5 \
#       shufflenetv2_x0.5-f707e7126e.pth checkpoints/shufflenetv2_x0.5_torchvision.pth
_base_ = '../retinanet_shufflenetv2.py'

model = dict(
    backbone=dict(
        widen_factor=0.5,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/shufflenetv2_x0.5_torchvision.pth')),
    neck=dict(in_channels=[48, 96, 192]))  # = backbone.out_channels (stage2/3/4 of ShuffleNet V2 0.5x)
