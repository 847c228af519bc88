"""Compact re-implementation of the official searched ShuffleNet-Series networks, for tests only.

Written from the structure of megvii-model/ShuffleNet-Series ``DetNAS``, ``ShuffleNetV2+`` and ``OneShot``
(``blocks.py``/``network.py``): the same module names (so the same state-dict keys), the same even/odd channel
routing at the input of stride-1 units, and the same ImageNet heads. Used to make random official-layout checkpoints
and reference outputs for the converter round trips. Pure torch: no dependency on the code under test.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from . import randomize_, run_collecting  # noqa: F401  (randomize_ re-exported: random weights + BN statistics)

BLOCKS_KEY = ('shufflenet_3x3', 'shufflenet_5x5', 'shufflenet_7x7', 'xception_3x3')


def official_channel_shuffle(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Official stride-1 routing: (even channels, odd channels)."""
    b, c, h, w = x.shape
    assert c % 4 == 0
    x = x.reshape(b * c // 2, 2, h * w).permute(1, 0, 2).reshape(2, -1, c // 2, h, w)
    return x[0], x[1]


class HS(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.clamp(x + 3, 0, 6) / 6


class SELayer(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.SE_opr = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, c // 4, 1, bias=False),
                                    nn.BatchNorm2d(c // 4), nn.ReLU(inplace=True), nn.Conv2d(c // 4, c, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * (torch.clamp(self.SE_opr(x) + 3, 0, 6) / 6)


def _act(name: str) -> nn.Module:
    return nn.ReLU(inplace=True) if name == 'ReLU' else HS()


# ------------------------------------------------------------------ V2+ / OneShot units (branch_main / branch_proj)
class OfficialUnit(nn.Module):
    """``Shufflenet`` / ``Shuffle_Xception`` of ShuffleNetV2+ and OneShot."""

    def __init__(self, inp: int, oup: int, mid: int, choice: int, stride: int, act: str = 'ReLU',
                 use_se: bool = False, xception_all_strided: bool = False) -> None:
        super().__init__()
        self.stride = stride
        outputs = oup - inp
        k = 3 if choice == 3 else (3, 5, 7)[choice]
        if choice == 3:
            s2 = stride if xception_all_strided else 1  # ShuffleNetV2+ strides all three dw convs
            main = [nn.Conv2d(inp, inp, 3, stride, 1, groups=inp, bias=False), nn.BatchNorm2d(inp),
                    nn.Conv2d(inp, mid, 1, bias=False), nn.BatchNorm2d(mid), _act(act),
                    nn.Conv2d(mid, mid, 3, s2, 1, groups=mid, bias=False), nn.BatchNorm2d(mid),
                    nn.Conv2d(mid, mid, 1, bias=False), nn.BatchNorm2d(mid), _act(act),
                    nn.Conv2d(mid, mid, 3, s2, 1, groups=mid, bias=False), nn.BatchNorm2d(mid),
                    nn.Conv2d(mid, outputs, 1, bias=False), nn.BatchNorm2d(outputs), _act(act)]
        else:
            main = [nn.Conv2d(inp, mid, 1, bias=False), nn.BatchNorm2d(mid), _act(act),
                    nn.Conv2d(mid, mid, k, stride, k // 2, groups=mid, bias=False), nn.BatchNorm2d(mid),
                    nn.Conv2d(mid, outputs, 1, bias=False), nn.BatchNorm2d(outputs), _act(act)]
        if use_se:
            main.append(SELayer(outputs))
        self.branch_main = nn.Sequential(*main)
        if stride == 2:
            self.branch_proj = nn.Sequential(nn.Conv2d(inp, inp, k, 2, k // 2, groups=inp, bias=False),
                                             nn.BatchNorm2d(inp), nn.Conv2d(inp, inp, 1, bias=False),
                                             nn.BatchNorm2d(inp), _act(act))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            x_proj, x = official_channel_shuffle(x)
            return torch.cat((x_proj, self.branch_main(x)), 1)
        return torch.cat((self.branch_proj(x), self.branch_main(x)), 1)


class _StagesMixin:
    """``forward``: stem, features, last conv (``_last``), ImageNet head (``_head``); ``forward_features``: the four
    stage outputs and the last conv output."""

    stage_ends: list[int]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._head(self._last(self.features(self.first_conv(x))))

    def forward_features(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        x, stages = run_collecting(self.first_conv(x), self.features, self.stage_ends)
        return stages, self._last(x)


def _stage_ends(repeats: Sequence[int]) -> list[int]:
    ends, total = [], 0
    for r in repeats:
        total += r
        ends.append(total - 1)
    return ends


class OfficialOneShot(_StagesMixin, nn.Module):
    """``ShuffleNetV2_OneShot``: first_conv, features.N, conv_last, classifier (no bias)."""

    def __init__(self, stem: int, stages: Sequence[int], last: int, repeats: Sequence[int], choices: Sequence[int],
                 channel_scales: Sequence[float], n_class: int = 1000) -> None:
        super().__init__()
        self.first_conv = nn.Sequential(nn.Conv2d(3, stem, 3, 2, 1, bias=False), nn.BatchNorm2d(stem),
                                        nn.ReLU(inplace=True))
        units, inp, idx = [], stem, 0
        for out, rep in zip(stages, repeats):
            for i in range(rep):
                mid = int(out // 2 * channel_scales[idx])
                units.append(OfficialUnit(inp if i == 0 else inp // 2, out, mid, choices[idx], 2 if i == 0 else 1))
                inp, idx = out, idx + 1
        self.features = nn.Sequential(*units)
        self.conv_last = nn.Sequential(nn.Conv2d(inp, last, 1, bias=False), nn.BatchNorm2d(last),
                                       nn.ReLU(inplace=True))
        self.classifier = nn.Sequential(nn.Linear(last, n_class, bias=False))
        self.stage_ends = _stage_ends(repeats)

    def _last(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_last(x)

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(x.mean((2, 3)))


class OfficialV2Plus(_StagesMixin, nn.Module):
    """``ShuffleNetV2_Plus``: HS stem, ReLU stage 1, HS + SE stages, LastSE + fc + classifier head."""

    def __init__(self, stem: int, stages: Sequence[int], last: int, repeats: Sequence[int], choices: Sequence[int],
                 n_class: int = 1000) -> None:
        super().__init__()
        self.first_conv = nn.Sequential(nn.Conv2d(3, stem, 3, 2, 1, bias=False), nn.BatchNorm2d(stem), HS())
        units, inp, idx = [], stem, 0
        for s, (out, rep) in enumerate(zip(stages, repeats)):
            for i in range(rep):
                units.append(OfficialUnit(inp if i == 0 else inp // 2, out, out // 2, choices[idx],
                                          2 if i == 0 else 1, act='HS' if s >= 1 else 'ReLU', use_se=s >= 2,
                                          xception_all_strided=True))
                inp, idx = out, idx + 1
        self.features = nn.Sequential(*units)
        self.conv_last = nn.Sequential(nn.Conv2d(inp, last, 1, bias=False), nn.BatchNorm2d(last), HS())
        self.LastSE = SELayer(last)
        self.fc = nn.Sequential(nn.Linear(last, last, bias=False), HS())
        self.classifier = nn.Sequential(nn.Linear(last, n_class, bias=False))
        self.stage_ends = _stage_ends(repeats)
        self.last = last

    def _last(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_last(x)

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        x = self.LastSE(x.mean((2, 3), keepdim=True)).view(-1, self.last)
        return self.classifier(self.fc(x))


# ------------------------------------------------------------------ DetNAS (named interstellar/bn sub-layers)
def _named_seq(layers: list[tuple[str, nn.Module]]) -> nn.Sequential:
    seq = nn.Sequential()
    for name, module in layers:
        seq.add_module(name, module)
    return seq


def _dw_pw(prefix: str, cin: int, cout: int, k: int, stride: int, spatial: bool, relu: bool) -> nn.Sequential:
    """``create_spatial_conv2d_group_bn_relu`` with ``conv_name_fun = 'interstellar' + p``, ``bn = 'bn' + p``."""
    name = 'interstellar' + prefix
    layers = []
    if spatial:
        layers += [(name + '_s', nn.Conv2d(cin, cin, k, stride, k // 2, groups=cin, bias=False)),
                   (name + '_s_bn', nn.BatchNorm2d(cin))]
    layers += [(name, nn.Conv2d(cin, cout, 1, bias=False)), ('bn' + prefix, nn.BatchNorm2d(cout))]
    if relu:
        layers.append(('relu' + prefix, nn.ReLU(inplace=True)))
    return _named_seq(layers)


class OfficialDetNASUnit(nn.Module):
    """``ShuffleNetV2BlockSearched``: ``conv`` (main, named sub-sequentials), ``proj_conv`` (stride 2), ``relu``."""

    def __init__(self, prefix: str, inp: int, oup: int, stride: int, base_mid: int, choice: int) -> None:
        super().__init__()
        op = BLOCKS_KEY[choice]
        k = int(op.split('_')[1][0])
        self.stride = stride
        cin, cout = (inp, oup - inp) if stride == 2 else (inp // 2, oup // 2)
        p = f'{prefix}_{op}'
        if choice == 3:
            self.conv = nn.Sequential(_dw_pw(p + '_branch2a', cin, base_mid, 3, stride, True, True),
                                      _dw_pw(p + '_branch2b', base_mid, base_mid, 3, 1, True, True),
                                      _dw_pw(p + '_branch2c', base_mid, cout, 3, 1, True, False))
        else:
            self.conv = nn.Sequential(_dw_pw(p + '_branch2a', cin, base_mid, 0, 1, False, True),
                                      _dw_pw(p + '_branch2b', base_mid, cout, k, stride, True, False))
        if stride == 2:
            self.proj_conv = _dw_pw(prefix + '_proj', inp, inp, k, stride, True, True)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            x_proj, x = official_channel_shuffle(x)
        else:
            x_proj = self.proj_conv(x)
        return torch.cat((x_proj, self.relu(self.conv(x))), 1)


class ConvBNReLU(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, stride: int, padding: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, padding, bias=True)
        self.bn = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


class FC(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.fc = nn.Linear(cin, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


class OfficialDetNAS(_StagesMixin, nn.Module):
    """``ShuffleNetV2DetNAS``: first_conv/last_conv with conv bias, ``fc.fc`` classifier with bias."""

    def __init__(self, stem: int, stages: Sequence[int], last: int, repeats: Sequence[int], choices: Sequence[int],
                 n_class: int = 1000) -> None:
        super().__init__()
        self.first_conv = ConvBNReLU(3, stem, 3, 2, 1)
        units, inp, idx = [], stem, 0
        for s, (out, rep) in enumerate(zip(stages, repeats)):
            for i in range(rep):
                units.append(OfficialDetNASUnit(f'{s + 1}{chr(ord("a") + i)}', inp, out, 2 if i == 0 else 1,
                                                out // 2, choices[idx]))
                inp, idx = out, idx + 1
        self.features = nn.Sequential(*units)
        self.last_conv = ConvBNReLU(inp, last, 1, 1, 0)
        self.fc = FC(last, n_class)
        self.stage_ends = _stage_ends(repeats)

    def _last(self, x: torch.Tensor) -> torch.Tensor:
        return self.last_conv(x)

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean((2, 3)))


# ------------------------------------------------------------------ random official checkpoints
def official_checkpoint(model: nn.Module) -> dict:
    """The official file layout: ``{'state_dict': {'module.' + key: tensor}}`` (DataParallel training)."""
    return {'state_dict': {f'module.{k}': v.clone() for k, v in model.state_dict().items()}}


def build_official(family: str, spec: dict) -> nn.Module:
    """Build the official network of ``family`` ('DetNAS', 'ShuffleNetV2Plus', 'OneShot') from a raw table dict."""
    args = (spec['stem_channels'], spec['stage_channels'], spec['last_channels'], spec['repeats'], spec['choices'])
    if family == 'DetNAS':
        return OfficialDetNAS(*args)
    if family == 'ShuffleNetV2Plus':
        return OfficialV2Plus(*args)
    if family == 'OneShot':
        scales = [spec['scale_list'][i] for i in spec['scale_ids']]
        return OfficialOneShot(*args, channel_scales=scales)
    raise ValueError(f'unknown family {family!r}')
