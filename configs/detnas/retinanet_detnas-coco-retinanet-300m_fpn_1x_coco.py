# RetinaNet + DetNAS (COCO-RetinaNet-300M, the backbone DetNAS searched for RetinaNet on COCO) + FPN, COCO 1x.
# ImageNet weights: the DetNAS authors' ImageNet-trained COCO-RetinaNet-300M backbone (megvii-model/DetNAS), converted:
#   python tools/model_converters/convert_weights.py --src megvii --type DetNAS --arch COCO-RetinaNet-300M \
#       <Megvii DetNAS COCO-RetinaNet-300M ImageNet checkpoint> checkpoints/detnas_coco-retinanet-300m_megvii.pth
# The paper trains with SyncBN (see configs/retinanet_shufflenetv2.py for the switch).
_base_ = '../retinanet_shufflenetv2.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='DetNAS',
        arch='COCO-RetinaNet-300M',
        out_indices=(1, 2, 3),  # strides 8/16/32: stages 2/3/4
        frozen_stages=0,  # stem + stage 1 (everything at stride 4)
        norm_cfg={{_base_.norm_cfg}},
        norm_eval=True,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/detnas_coco-retinanet-300m_megvii.pth')),
    neck=dict(in_channels=[160, 320, 640]))  # = backbone.out_channels (stages 2/3/4 of the 300M search space)
