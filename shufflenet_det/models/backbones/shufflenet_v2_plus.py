"""ShuffleNetV2+ (megvii-model/ShuffleNet-Series ``ShuffleNetV2+``): the SPOS block space (arXiv 1904.00420) on
ShuffleNet V2 (arXiv 1807.11164) with h-swish and squeeze-excitation, as in MobileNetV3.

Published layout (``arch='Small' | 'Medium' | 'Large'``, all with the same 20 searched block choices):

* stem: 3x3 stride-2 conv (16 ch) + BN + h-swish; no max-pool;
* stage 1: ReLU; stages 2-4: h-swish after every pointwise conv (main and projection branch);
* stages 3-4: a squeeze-excitation (``C -> C/4`` conv, BN, ReLU, ``C/4 -> C`` conv, hard-sigmoid gate) at the end
  of every unit's main branch;
* conv_last: 1x1 conv to 1280 + BN + h-swish.

The official ImageNet head after ``conv_last`` (global pool, SE on the pooled 1280 vector, ``Linear(1280, 1280)`` +
h-swish, dropout, ``Linear(1280, 1000)``) is not part of the backbone; :class:`ShuffleNetV2PlusHead` rebuilds it
(used for ImageNet classification and by the complexity analysis, whose published counts include it).

The official ``Shuffle_Xception`` of ShuffleNetV2+ strides all three depthwise convs of a stride-2 unit (an
architecture with a stride-2 xception unit would not run there; the published one has none). Here, as in the
OneShot implementation, only the first depthwise conv has the stride.
"""
from __future__ import annotations

import torch
from mmdet.registry import MODELS
from torch import nn

from .archs.searched import parse_v2plus_arch
from .searched_base import SearchedShuffleBackbone
from .spos_blocks import SqueezeExcite


@MODELS.register_module()
class ShuffleNetV2Plus(SearchedShuffleBackbone):
    """ShuffleNetV2+ backbone.

    Args:
        arch: ``'Small'`` (default), ``'Medium'``, ``'Large'`` or a dict encoding (keys of DetNAS plus optional
            ``stem_act``, ``stage_acts``, ``last_act`` in ``'ReLU'``/``'HSwish'`` and ``se_stages``).
        out_indices, act_cfg, **kwargs: see :class:`SearchedShuffleBackbone`. ``act_cfg=None`` (default) keeps the
            published activations (ReLU / h-swish per position, see module docstring); a config replaces every one
            of them, e.g. ``dict(type='ReLU')`` for hardware without h-swish. The SE squeeze keeps ReLU and its
            hard-sigmoid gate.
    """

    default_arch = 'Small'
    parse_arch = staticmethod(parse_v2plus_arch)


class ShuffleNetV2PlusHead(nn.Module):
    """The official ShuffleNetV2+ ImageNet head on the ``conv_last`` feature map.

    Global average pool, :class:`~shufflenet_det.models.backbones.spos_blocks.SqueezeExcite` on the pooled vector
    (official ``LastSE``), ``Linear(C, C, bias=False)`` + h-swish (``fc``), dropout, ``Linear(C, num_classes)``
    (``classifier``, no bias officially).
    """

    def __init__(self, in_channels: int = 1280, num_classes: int = 1000, bias: bool = False,
                 dropout: float = 0.2) -> None:
        super().__init__()
        self.last_se = SqueezeExcite(in_channels)
        self.fc = nn.Sequential(nn.Linear(in_channels, in_channels, bias=False), nn.Hardswish())
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(in_channels, num_classes, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.last_se(x.mean((2, 3), keepdim=True)).flatten(1)
        return self.classifier(self.dropout(self.fc(x)))
