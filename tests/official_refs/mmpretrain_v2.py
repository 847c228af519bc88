"""mmpretrain's ShuffleNetV2 backbone + linear head (open-mmlab/mmpretrain), re-implemented for tests without
importing mmpretrain.

Keys: ``backbone.conv1.{conv,bn}``, ``backbone.layers.{0,1,2}.{i}.branch1.{0,1}.{conv,bn}`` (stride 2) /
``branch2.{0,1,2}.{conv,bn}``, ``backbone.layers.3.{conv,bn}`` (conv5), ``head.fc``. Unit: torchvision's
formulation (split by slicing, concat, shuffle with 2 groups).
"""
from __future__ import annotations

import torch
from torch import nn

from . import run_collecting

CHANNELS = {0.5: (48, 96, 192, 1024), 1.0: (116, 232, 464, 1024), 1.5: (176, 352, 704, 1024),
            2.0: (244, 488, 976, 2048)}


class ConvBN(nn.Module):
    """The parameter layout of an mmcv ``ConvModule`` with BN: ``conv`` (bias-free) and ``bn``."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, relu: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.activate = nn.ReLU() if relu else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activate(self.bn(self.conv(x)))


def shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """mmpretrain's ``channel_shuffle``: view ``(g, c/g)``, transpose."""
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.stride, half = stride, cout // 2
        if stride > 1:
            self.branch1 = nn.Sequential(ConvBN(cin, cin, 3, stride, groups=cin, relu=False), ConvBN(cin, half, 1))
        self.branch2 = nn.Sequential(ConvBN(cin if stride > 1 else half, half, 1),
                                     ConvBN(half, half, 3, stride, groups=half, relu=False), ConvBN(half, half, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            out = torch.cat((self.branch1(x), self.branch2(x)), 1)
        else:
            c = x.shape[1] // 2 + x.shape[1] % 2
            out = torch.cat((x[:, :c], self.branch2(x[:, c:])), 1)
        return shuffle(out, 2)


class Backbone(nn.Module):
    def __init__(self, widen_factor: float) -> None:
        super().__init__()
        ch = CHANNELS[widen_factor]
        self.conv1 = ConvBN(3, 24, 3, 2)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layers = nn.ModuleList()
        cin = 24
        for repeats, cout in zip((4, 8, 4), ch[:3]):
            units = []
            for i in range(repeats):
                units.append(InvertedResidual(cin, cout, 2 if i == 0 else 1))
                cin = cout
            self.layers.append(nn.Sequential(*units))
        self.layers.append(ConvBN(cin, ch[3], 1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return run_collecting(self.maxpool(self.conv1(x)), self.layers)[1]


class Head(nn.Module):
    def __init__(self, cin: int, n_class: int = 10) -> None:
        super().__init__()
        self.fc = nn.Linear(cin, n_class)


class MMPretrainShuffleNetV2(nn.Module):
    """``backbone`` + ``head`` as in an mmpretrain ImageClassifier checkpoint."""

    def __init__(self, widen_factor: float = 1.0) -> None:
        super().__init__()
        self.backbone = Backbone(widen_factor)
        self.head = Head(CHANNELS[widen_factor][3])

    def stage_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Outputs of stage 2, 3, 4 and conv5."""
        return self.backbone(x)
