"""Published ShuffleNetV2.Large and ShuffleNetV2.ExLarge classifiers and their reference complexity (registered on
import).

References: conv + linear multiply-adds and parameters at 224x224 counted on the official megvii-model/
ShuffleNet-Series ``ShuffleNetV2.Large/network.py`` and ``ShuffleNetV2.ExLarge/network.py`` (random weights, eval
mode) with their ImageNet classifier and without the training-only auxiliary classifiers (``predict_56/28/14``,
15.56M / 15.91M parameters, which the official README's 140.7M for Large includes). The classifier
(:class:`~shufflenet_det.models.backbones.shufflenet_v2_large.ShuffleNetV2LargeHead`, registered as the
ShuffleNetV2Large classifier head): global pool, dropout, ``Linear(C, 1000)`` with bias on Large's 1280-channel last
conv / ExLarge's 2560-channel stage 4. The SE layers are counted as the official linear layers (``C * C / r``
multiply-adds each, here 1x1 convs on the pooled map).
"""
from __future__ import annotations

from torch import nn

from ..models.backbones.shufflenet_v2_large import ShuffleNetV2LargeHead
from .complexity import register_classifier_head
from .published import PublishedVariant, register_published_variant

_SOURCE = ('megvii-model/ShuffleNet-Series ShuffleNetV2.{}, conv+linear multiply-adds counted with the ImageNet '
           'classifier, without the training-only auxiliary classifiers')


def _large_head(in_channels: int, num_classes: int, bias: bool) -> nn.Module:
    return ShuffleNetV2LargeHead(in_channels, num_classes, bias=bias)


register_classifier_head('ShuffleNetV2Large', _large_head)

# arch: (multiply-adds, params) counted; the official README's (FLOPs, params, top-1 error) for display
_LARGE = {
    'Large': ((12780.7e6, 125.12e6), dict(readme_flops=12.7e9, readme_params=140.7e6, params_with_aux=140.69e6,
                                          top1_err=18.56)),
    'ExLarge': ((46174.8e6, 255.37e6), dict(readme_flops=46.2e9, readme_params=254.7e6, params_with_aux=271.28e6,
                                            top1_err=15.52)),
}
for _arch, ((_flops, _params), _extra) in _LARGE.items():
    register_published_variant(PublishedVariant(
        name=f'ShuffleNetV2.{_arch}', backbone=dict(type='ShuffleNetV2Large', arch=_arch), flops=_flops,
        params=_params, classifier_bias=True, source=_SOURCE.format(_arch), extra=_extra))

del _arch, _flops, _params, _extra
