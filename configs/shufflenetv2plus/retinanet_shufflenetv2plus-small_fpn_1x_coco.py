# RetinaNet + ShuffleNetV2+ Small + FPN, COCO 1x. Base of the ShuffleNetV2+ RetinaNet configs.
# ImageNet weights: the official Megvii ShuffleNetV2+ Small model (megvii-model/ShuffleNet-Series), converted:
#   python tools/model_converters/convert_weights.py --src megvii --type ShuffleNetV2Plus --arch Small \
#       <Megvii ShuffleNetV2+ Small checkpoint> checkpoints/shufflenetv2plus_small_megvii.pth
_base_ = '../retinanet_shufflenetv2.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='ShuffleNetV2Plus',
        arch='Small',
        out_indices=(1, 2, 3),  # strides 8/16/32: stages 2/3/4
        frozen_stages=0,  # stem + stage 1 (everything at stride 4)
        norm_cfg={{_base_.norm_cfg}},
        norm_eval=True,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/shufflenetv2plus_small_megvii.pth')),
    neck=dict(in_channels=[104, 208, 416]))  # = backbone.out_channels (stages 2/3/4 of Small)
