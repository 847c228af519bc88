"""Compact re-implementation of the official ShuffleNetV2.Large and ShuffleNetV2.ExLarge, for tests only.

Written from the structure of megvii-model/ShuffleNet-Series ``ShuffleNetV2.Large/network.py`` and
``ShuffleNetV2.ExLarge/network.py``: the same module names (so the same state-dict keys, the ``se_block.0`` /
``se_block.2`` aliases of ``se_fc1`` / ``se_fc2`` and the training-only ``predict_56/28/14`` heads included), the same
even/odd channel routing and the same ImageNet classifiers. Widths and depths are arguments so that a narrow or
shallow network of either layout can be built, its random state dict converted, and the converted backbone compared
with it numerically. Pure torch: no dependency on the code under test.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from . import randomize_, run_collecting  # noqa: F401  (randomize_ re-exported: random weights + BN statistics)
from .megvii_searched import official_channel_shuffle

#: The published configurations: stem widths, stage output widths, repeats, groups, last conv, aux head widths.
LARGE = dict(stem=(64, 64, 128), stages=(256, 512, 1024, 2048), repeats=(10, 10, 23, 10), groups=8, last=1280,
             aux=(256, 512, 1024))
EXLARGE = dict(stem=(64, 128, 256), stages=(320, 640, 1280, 2560), repeats=(8, 16, 36, 10), groups=16,
               aux=(256, 512, 1024))


class ConvBNReLU(nn.Module):
    """``Conv_BN_ReLU``: ``conv`` (no bias, padding k // 2), ``bn``, optional ReLU."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, relu: bool = True,
                 eps: float = 1e-5) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=eps)
        self.use_relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return F.relu(x) if self.use_relu else x


class FC(nn.Module):
    """ExLarge's ``FC`` wrapper (keys ``<name>.fc.weight`` / ``.fc.bias``)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.fc = nn.Linear(cin, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


class ExtraLabelPredict(nn.Module):
    """The training-only auxiliary classifier (maxpool, 1x1 + 3x3 Conv_BN_ReLU, global pool, fc)."""

    def __init__(self, cin: int, cout: int, n_class: int, eps: float) -> None:
        super().__init__()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.conv = nn.Sequential(ConvBNReLU(cin, cout, 1, eps=eps), ConvBNReLU(cout, cout, 3, eps=eps))
        self.fc = nn.Linear(cout, n_class)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(self.maxpool(x)).mean((2, 3)))


def _se(module: nn.Module, fc1: nn.Module, fc2: nn.Module) -> None:
    module.se_fc1, module.se_fc2 = fc1, fc2
    module.se_block = nn.Sequential(fc1, nn.ReLU(inplace=True), fc2, nn.Sigmoid())


def _scale(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return x * module.se_block(x.mean((2, 3)))[:, :, None, None]


class LargeUnit(nn.Module):
    """Large ``ShuffleV2Block``: ``half_in`` = channels of each input half, ``width`` = half of the output."""

    def __init__(self, half_in: int, width: int, stride: int, groups: int, first: bool, eps: float) -> None:
        super().__init__()
        self.stride, self.first = stride, first
        if stride == 2:
            self.down = ConvBNReLU(2 * width, 2 * width, 1, eps=eps)
        if first:
            self.proj = ConvBNReLU(half_in, width, 3, stride, relu=False, eps=eps)
        self.branch_main = nn.Sequential(ConvBNReLU(half_in, width, 1, eps=eps),
                                         ConvBNReLU(width, width, 3, stride, groups, eps=eps),
                                         ConvBNReLU(width, width, 1, relu=False, eps=eps))
        _se(self, nn.Linear(width, width), nn.Linear(width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        even, odd = official_channel_shuffle(x)
        main = _scale(self, self.branch_main(odd))
        left = self.proj(even) if self.first else even
        out = F.relu(torch.cat((left, main if self.first else odd + main), 1))
        return self.down(out) if self.stride == 2 else out


class ExLargeUnit(nn.Module):
    """ExLarge ``ShuffleV2Block``: ``inp`` = official ``in_channels``, ``out`` the unit output, ``mid = out / 2``."""

    def __init__(self, inp: int, out: int, stride: int, groups: int, first: bool) -> None:
        super().__init__()
        mid = out // 2
        self.first = first
        if first:
            self.proj = ConvBNReLU(inp, out - mid, 3, stride)
        self.branch_main = nn.Sequential(ConvBNReLU(inp, out, 1), ConvBNReLU(out, out, 3, stride, groups),
                                         ConvBNReLU(out, out, 3, groups=out, relu=False),
                                         ConvBNReLU(out, mid, 1, relu=False))
        _se(self, FC(mid, mid // 4), FC(mid // 4, mid))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.first:
            return torch.cat((self.proj(x), _scale(self, self.branch_main(x))), 1)
        even, odd = official_channel_shuffle(x)
        return torch.cat((even, F.relu(odd + _scale(self, self.branch_main(odd)))), 1)


class OfficialLargeBase(nn.Module):
    """``forward``: the eval-mode classifier; ``forward_features``: the four stage outputs and the last output (Large:
    ``conv_last``; ExLarge: stage 4)."""

    def _stem(self, stem: Sequence[int], eps: float) -> None:
        self.first_conv = nn.Sequential(ConvBNReLU(3, stem[0], 3, 2, eps=eps), ConvBNReLU(stem[0], stem[1], 3, eps=eps),
                                        ConvBNReLU(stem[1], stem[2], 3, eps=eps))
        self.maxpool = nn.MaxPool2d(3, 2, 1)

    def forward_features(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        x, stages = run_collecting(self.maxpool(self.first_conv(x)), self.features)
        return stages, self._last(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._head(self.forward_features(x)[1])


class OfficialLarge(OfficialLargeBase):
    """``ShuffleNetV2(model_size='large')``: ``features.N.{2..5}{a, b, ...}``, ``conv_last``, ``fc`` (BN eps 1e-9)."""

    def __init__(self, stem: Sequence[int] = LARGE['stem'], stages: Sequence[int] = LARGE['stages'],
                 repeats: Sequence[int] = LARGE['repeats'], groups: int = LARGE['groups'], last: int = LARGE['last'],
                 aux: Sequence[int] = LARGE['aux'], n_class: int = 1000, eps: float = 1e-9) -> None:
        super().__init__()
        self._stem(stem, eps)
        self.features = nn.ModuleList()
        half_in = stem[2] // 2
        for s, (out, rep) in enumerate(zip(stages, repeats)):
            seq = nn.Sequential()
            for i in range(rep):
                seq.add_module(f'{s + 2}{chr(ord("a") + i)}',
                               LargeUnit(half_in, out // 2, 2 if s > 0 and i == 0 else 1, groups, i == 0, eps))
                half_in = out // 2
            self.features.append(seq)
            if s < 3:
                setattr(self, f'predict_{(56, 28, 14)[s]}', ExtraLabelPredict(out, aux[s], n_class, eps))
        self.conv_last = ConvBNReLU(stages[-1], last, 3, eps=eps)
        self.fc = nn.Linear(last, n_class)

    def _last(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_last(x)

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean((2, 3)))


class OfficialExLarge(OfficialLargeBase):
    """``ShuffleNetV2(model_size='ExLarge')``: ``features.N.{0..}`` units then the stage's 1x1 Conv_BN_ReLU,
    ``fc.fc`` on the pooled stage 4 (no last conv; default BN eps)."""

    def __init__(self, stem: Sequence[int] = EXLARGE['stem'], stages: Sequence[int] = EXLARGE['stages'],
                 repeats: Sequence[int] = EXLARGE['repeats'], groups: int = EXLARGE['groups'],
                 aux: Sequence[int] = EXLARGE['aux'], n_class: int = 1000) -> None:
        super().__init__()
        self._stem(stem, 1e-5)
        self.features = nn.ModuleList()
        inp = stem[2]
        for s, (out, rep) in enumerate(zip(stages, repeats)):
            units: list[nn.Module] = []
            for i in range(rep):
                units.append(ExLargeUnit(inp, out, 2 if s > 0 and i == 0 else 1, groups, i == 0))
                inp = out // 2
            units.append(ConvBNReLU(out, out, 1))
            inp = out
            self.features.append(nn.Sequential(*units))
            if s < 3:
                setattr(self, f'predict_{(56, 28, 14)[s]}', ExtraLabelPredict(out, aux[s], n_class, 1e-5))
        self.fc = FC(stages[-1], n_class)

    def _last(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean((2, 3)))


def official_checkpoint(model: nn.Module) -> dict:
    """The official file layout: ``{'state_dict': {'module.' + key: tensor}}`` (DataParallel training)."""
    return {'state_dict': {f'module.{k}': v.clone() for k, v in model.state_dict().items()}}


def aux_keys(model: nn.Module) -> list[str]:
    """State-dict keys of the training-only auxiliary heads."""
    return [k for k in model.state_dict() if k.startswith('predict_')]
