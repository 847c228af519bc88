"""Published DetNAS, ShuffleNetV2+ and OneShot classifiers and their reference complexity (registered on import).

References: conv + linear multiply-adds and parameters at 224x224 counted on the official megvii-model/
ShuffleNet-Series implementations with their ImageNet heads. The heads, as in the official code:

* DetNAS: global pool + ``Linear(last, 1000)`` with bias (``fc.fc``). The official stem and last conv also carry a
  bias (1,040 parameters for the 300M models, < 0.03 %), which this backbone folds into the BN.
* OneShot: global pool + ``Linear(1024, 1000, bias=False)``.
* ShuffleNetV2+: global pool, SE on the pooled 1280 vector, ``Linear(1280, 1280)`` + h-swish, ``Linear(1280, 1000)``
  (no biases): :class:`~shufflenet_det.models.backbones.shufflenet_v2_plus.ShuffleNetV2PlusHead`, registered as the
  ShuffleNetV2Plus classifier head. Its 3.7M parameters are most of V2+'s published 5.1-6.8M.

DetNAS names are nominal (COCO-FPN-300M counts 321.2M).
"""
from __future__ import annotations

from torch import nn

from ..models.backbones.shufflenet_v2_plus import ShuffleNetV2PlusHead
from .complexity import register_classifier_head
from .published import PublishedVariant, register_published_variant

_SOURCE = 'megvii-model/ShuffleNet-Series {}, conv+linear multiply-adds counted with the official ImageNet head'


def _v2plus_head(in_channels: int, num_classes: int, bias: bool) -> nn.Module:
    return ShuffleNetV2PlusHead(in_channels, num_classes, bias=bias)


register_classifier_head('ShuffleNetV2Plus', _v2plus_head)

_DETNAS = {
    # arch: (multiply-adds, params)
    'COCO-FPN-300M': (321.2e6, 3.53e6), 'COCO-RetinaNet-300M': (324.3e6, 3.73e6),
    'VOC-FPN-300M': (349.5e6, 3.65e6), 'VOC-RetinaNet-300M': (360.6e6, 3.48e6),
    'COCO-FPN-1.3G': (1318.4e6, 10.43e6), 'COCO-FPN-3.8G': (4085.9e6, 31.44e6),
}
for _arch, (_flops, _params) in _DETNAS.items():
    register_published_variant(PublishedVariant(
        name=f'DetNAS {_arch}', backbone=dict(type='DetNAS', arch=_arch), flops=_flops, params=_params,
        classifier_bias=True, source=_SOURCE.format('DetNAS')))

_V2PLUS = {'Small': (155.8e6, 5.14e6), 'Medium': (222.2e6, 5.68e6), 'Large': (360.1e6, 6.77e6)}
for _arch, (_flops, _params) in _V2PLUS.items():
    register_published_variant(PublishedVariant(
        name=f'ShuffleNetV2+ {_arch}', backbone=dict(type='ShuffleNetV2Plus', arch=_arch), flops=_flops,
        params=_params, classifier_bias=False, source=_SOURCE.format('ShuffleNetV2+')))

register_published_variant(PublishedVariant(
    name='OneShot', backbone=dict(type='OneShot'), flops=327.9e6, params=3.43e6, classifier_bias=False,
    source=_SOURCE.format('OneShot')))

del _arch, _flops, _params
