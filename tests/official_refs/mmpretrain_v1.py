"""mmpretrain's ShuffleNetV1 backbone + linear head (open-mmlab/mmpretrain), re-implemented for tests without
importing mmpretrain.

Keys: ``backbone.conv1.{conv,bn}``, ``backbone.layers.{0,1,2}.{i}.{g_conv_1x1_compress, depthwise_conv3x3_bn,
g_conv_1x1_expand}.{conv,bn}``, ``head.fc``. The shuffle after the depthwise conv is mmpretrain's
``channel_shuffle(x, groups)`` (view ``(g, c/g)``, transpose). Widths: ``make_divisible(c * widen_factor, 8)``,
stem ``int(24 * widen_factor)``.
"""
from __future__ import annotations

import torch
from torch import nn

from . import run_collecting
from .mmpretrain_v2 import ConvBN, Head, shuffle

PAPER_CHANNELS = {1: (144, 288, 576), 2: (200, 400, 800), 3: (240, 480, 960), 4: (272, 544, 1088),
                  8: (384, 768, 1536)}


def make_divisible(value: float, divisor: int = 8, min_ratio: float = 0.9) -> int:
    """mmpretrain's rounding: nearest multiple of ``divisor``, never below ``min_ratio * value``."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < min_ratio * value else new


class ShuffleUnit(nn.Module):
    def __init__(self, cin: int, cout: int, groups: int, first_block: bool, concat: bool) -> None:
        super().__init__()
        self.groups, self.concat = groups, concat
        mid = cout // 4
        out = cout - cin if concat else cout
        self.g_conv_1x1_compress = ConvBN(cin, mid, 1, groups=1 if first_block else groups)
        self.depthwise_conv3x3_bn = ConvBN(mid, mid, 3, 2 if concat else 1, groups=mid, relu=False)
        self.g_conv_1x1_expand = ConvBN(mid, out, 1, groups=groups, relu=False)
        if concat:
            self.avgpool = nn.AvgPool2d(3, 2, 1)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.depthwise_conv3x3_bn(self.g_conv_1x1_compress(x))
        if self.groups > 1:
            out = shuffle(out, self.groups)
        out = self.g_conv_1x1_expand(out)
        if self.concat:
            return torch.cat((self.avgpool(x), self.act(out)), 1)
        return self.act(x + out)


class Backbone(nn.Module):
    def __init__(self, groups: int, widen_factor: float) -> None:
        super().__init__()
        channels = [make_divisible(c * widen_factor, 8) for c in PAPER_CHANNELS[groups]]
        cin = int(24 * widen_factor)
        self.conv1 = ConvBN(3, cin, 3, 2)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layers = nn.ModuleList()
        for s, (repeats, cout) in enumerate(zip((4, 8, 4), channels)):
            units = []
            for i in range(repeats):
                units.append(ShuffleUnit(cin, cout, groups, first_block=s == 0 and i == 0, concat=i == 0))
                cin = cout
            self.layers.append(nn.Sequential(*units))
        self.out_channels = cin

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return run_collecting(self.maxpool(self.conv1(x)), self.layers)[1]


class MMPretrainShuffleNetV1(nn.Module):
    """``backbone`` + ``head`` as in an mmpretrain ImageClassifier checkpoint."""

    def __init__(self, groups: int = 3, widen_factor: float = 1.0) -> None:
        super().__init__()
        self.backbone = Backbone(groups, widen_factor)
        self.head = Head(self.backbone.out_channels)

    def stage_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Outputs of stage 2, 3 and 4."""
        return self.backbone(x)
