"""PaddleDetection's ``ESNet`` (PP-PicoDet's backbone, ``ppdet/modeling/backbones/esnet.py``, release 2.6),
re-implemented in plain torch for tests, with Paddle's module names and layer order.

Written from the published architecture: ``_conv1`` (ConvBNLayer 3 -> 24, stride 2, act) and ``_max_pool``, then the
units added as sub-layers named ``"<stage>_<unit>"`` (``2_1`` .. ``4_3``): ``InvertedResidualDS`` first in a stage
(``_conv_dw_1``, ``_conv_linear_1``, ``_conv_pw_2``, ``_conv_dw_2``, ``_se``, ``_conv_linear_2``, ``_conv_dw_mv1``,
``_conv_pw_mv1``; no shuffle), ``InvertedResidual`` after it (``_conv_pw``, ``_conv_dw``, ``_se``, ``_conv_linear``;
halves split, ``channel_shuffle(., 2)`` after the concat). A ``ConvBNLayer`` is ``_conv`` (no bias) + ``_batch_norm``
(Paddle's ``BatchNorm`` with its ``act``); ``SEModule`` is ``avg_pool``, ``conv1`` / ``conv2`` (1x1 with bias),
ReLU and Paddle's ``hardsigmoid`` (slope 0.1666667, offset 0.5). Paddle's ``_conv_dw_mv1`` / ``_conv_pw_mv1`` are
hard swish whatever ``act`` is, as here.

:func:`paddle_state_dict` gives the state dict under Paddle's key names (BN ``_mean`` / ``_variance``, no
``num_batches_tracked``), i.e. what ``paddle.load`` of a ``.pdparams`` holds; ESNet has no ``Linear`` (the SE uses
1x1 convs), so no weight is stored transposed. Pure torch: no dependency on the code under test.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from . import randomize_  # noqa: F401  (re-exported: random weights + BN statistics)

#: The legacy PicoDet configs: ``ESNet: scale, channel_ratio`` (S: picodet_s_*.yml; M: _base_/picodet_esnet.yml;
#: L: picodet_l_*.yml), ``feature_maps: [4, 11, 14]``, ``act: hard_swish``.
PICODET_ESNET = {
    'S': dict(scale=0.75, channel_ratio=[0.875, 0.5, 0.5, 0.5, 0.625, 0.5, 0.625, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]),
    'M': dict(scale=1.0, channel_ratio=[0.875, 0.5, 1.0, 0.625, 0.5, 0.75, 0.625, 0.625, 0.5, 0.625, 1.0, 0.625,
                                        0.75]),
    'L': dict(scale=1.25, channel_ratio=[0.875, 0.5, 1.0, 0.625, 0.5, 0.75, 0.625, 0.625, 0.5, 0.625, 1.0, 0.625,
                                         0.75]),
}


def make_divisible(v: float, divisor: int = 16) -> int:
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


def _act(name: str | None, x: torch.Tensor) -> torch.Tensor:
    if name is None:
        return x
    if name == 'hard_swish':
        return F.hardswish(x)
    if name == 'relu':
        return F.relu(x)
    raise ValueError(f'unsupported act {name!r}')


def paddle_hardsigmoid(x: torch.Tensor) -> torch.Tensor:
    """``paddle.nn.functional.hardsigmoid`` with its defaults (slope 0.1666667, offset 0.5)."""
    return torch.clamp(x * 0.1666667 + 0.5, 0.0, 1.0)


class ConvBNLayer(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: str | None = None) -> None:
        super().__init__()
        self._conv = nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False)
        self._batch_norm = nn.BatchNorm2d(cout, eps=1e-5)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _act(self.act, self._batch_norm(self._conv(x)))


class SEModule(nn.Module):
    def __init__(self, channel: int, reduction: int = 4) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv1 = nn.Conv2d(channel, channel // reduction, 1)
        self.conv2 = nn.Conv2d(channel // reduction, channel, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * paddle_hardsigmoid(self.conv2(F.relu(self.conv1(self.avg_pool(x)))))


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    b, c, h, w = x.shape
    return x.reshape(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, mid: int, cout: int, act: str) -> None:
        super().__init__()
        self._conv_pw = ConvBNLayer(cin // 2, mid // 2, 1, act=act)
        self._conv_dw = ConvBNLayer(mid // 2, mid // 2, 3, groups=mid // 2)
        self._se = SEModule(mid)
        self._conv_linear = ConvBNLayer(mid, cout // 2, 1, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1] // 2
        x1, x2 = x[:, :c], x[:, c:]
        x2 = self._conv_pw(x2)
        x3 = self._conv_linear(self._se(torch.cat([x2, self._conv_dw(x2)], 1)))
        return channel_shuffle(torch.cat([x1, x3], 1), 2)


class InvertedResidualDS(nn.Module):
    def __init__(self, cin: int, mid: int, cout: int, act: str) -> None:
        super().__init__()
        self._conv_dw_1 = ConvBNLayer(cin, cin, 3, 2, groups=cin)
        self._conv_linear_1 = ConvBNLayer(cin, cout // 2, 1, act=act)
        self._conv_pw_2 = ConvBNLayer(cin, mid // 2, 1, act=act)
        self._conv_dw_2 = ConvBNLayer(mid // 2, mid // 2, 3, 2, groups=mid // 2)
        self._se = SEModule(mid // 2)
        self._conv_linear_2 = ConvBNLayer(mid // 2, cout // 2, 1, act=act)
        self._conv_dw_mv1 = ConvBNLayer(cout, cout, 3, groups=cout, act='hard_swish')
        self._conv_pw_mv1 = ConvBNLayer(cout, cout, 1, act='hard_swish')

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self._conv_linear_1(self._conv_dw_1(x))
        x2 = self._conv_linear_2(self._se(self._conv_dw_2(self._conv_pw_2(x))))
        return self._conv_pw_mv1(self._conv_dw_mv1(torch.cat([x1, x2], 1)))


class PaddleESNet(nn.Module):
    """``ESNet(scale, act, feature_maps, channel_ratio)``; ``forward`` returns the ``feature_maps`` outputs (the
    unit outputs whose index, counting the stem as 1, is listed); ``repeats`` is Paddle's fixed ``[3, 7, 3]``."""

    def __init__(self, scale: float = 1.0, act: str = 'hard_swish', feature_maps: Sequence[int] = (4, 11, 14),
                 channel_ratio: Sequence[float] = (1.0,) * 13, repeats: Sequence[int] = (3, 7, 3)) -> None:
        super().__init__()
        self.feature_maps = list(feature_maps)
        chans = [-1, 24, make_divisible(128 * scale), make_divisible(256 * scale), make_divisible(512 * scale)]
        self._conv1 = ConvBNLayer(3, chans[1], 3, 2, act=act)
        self._max_pool = nn.MaxPool2d(3, 2, 1)
        self._block_list: list[nn.Module] = []
        idx = 0
        for s, n in enumerate(repeats):
            for i in range(n):
                mid = make_divisible(int(chans[s + 2] * channel_ratio[idx]), divisor=8)
                block: nn.Module = (InvertedResidualDS(chans[s + 1], mid, chans[s + 2], act) if i == 0
                                    else InvertedResidual(chans[s + 2], mid, chans[s + 2], act))
                self.add_module(f'{s + 2}_{i + 1}', block)
                self._block_list.append(block)
                idx += 1

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        y = self._max_pool(self._conv1(x))
        outs = []
        for i, block in enumerate(self._block_list):
            y = block(y)
            if i + 2 in self.feature_maps:
                outs.append(y)
        return outs


def picodet_esnet(variant: str) -> PaddleESNet:
    """The ESNet of PicoDet-S / M / L (legacy configs)."""
    return PaddleESNet(**PICODET_ESNET[variant])


_PADDLE_BN = {'running_mean': '_mean', 'running_var': '_variance'}


def paddle_state_dict(model: PaddleESNet) -> dict[str, torch.Tensor]:
    """The state dict under Paddle's names: BN ``_mean`` / ``_variance``, no ``num_batches_tracked``."""
    out = {}
    for key, value in model.state_dict().items():
        head, _, leaf = key.rpartition('.')
        if leaf == 'num_batches_tracked':
            continue
        out[f'{head}.{_PADDLE_BN.get(leaf, leaf)}'] = value.clone()
    return out


def load_paddle_state_dict(model: PaddleESNet, state: dict[str, torch.Tensor]) -> None:
    """Load a state dict in Paddle's names (the inverse of :func:`paddle_state_dict`), strictly."""
    torch_names = {v: k for k, v in _PADDLE_BN.items()}
    renamed = {}
    for key, value in state.items():
        head, _, leaf = key.rpartition('.')
        renamed[f'{head}.{torch_names.get(leaf, leaf)}'] = value
    missing, unexpected = model.load_state_dict(renamed, strict=False)
    missing = [k for k in missing if not k.endswith('num_batches_tracked')]
    if missing or unexpected:
        raise KeyError(f'missing {missing}, unexpected {unexpected}')
