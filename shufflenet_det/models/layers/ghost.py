"""Ghost modules and bottlenecks (Han et al., "GhostNet: More Features from Cheap Operations", CVPR 2020,
arXiv 1911.11907), the building blocks of the lite detectors' PAN neck (NanoDet-Plus's GhostPAN).

A ghost module makes ``ceil(out / ratio)`` "intrinsic" channels with a 1x1 conv and the rest with a cheap depthwise
conv on them, then keeps the first ``out`` channels of the concatenation. Every conv is an mmcv ``ConvModule``
(conv, norm, act registered in that order), so mmcv's ``fuse_conv_bn`` folds every BN for deployment.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from mmcv.cnn import ConvModule
from torch import nn


class GhostModule(nn.Module):
    """``ceil(out / ratio)`` channels from a 1x1 conv, the others from a ``dw_size`` depthwise conv on them.

    Args:
        in_channels, out_channels: widths.
        ratio: total / intrinsic channels (2 in GhostNet).
        dw_size: kernel of the cheap depthwise conv.
        norm_cfg, act_cfg: mmcv configs; ``act_cfg=None`` leaves both convs linear (the second module of a
            bottleneck).
    """

    def __init__(self, in_channels: int, out_channels: int, ratio: int = 2, dw_size: int = 3,
                 norm_cfg: dict = dict(type='BN'), act_cfg: Optional[dict] = dict(type='LeakyReLU', negative_slope=0.1)
                 ) -> None:
        super().__init__()
        if ratio < 2:
            raise ValueError(f'GhostModule ratio must be >= 2, got {ratio}')
        self.out_channels = out_channels
        init_channels = math.ceil(out_channels / ratio)
        cheap_channels = init_channels * (ratio - 1)
        self.primary_conv = ConvModule(in_channels, init_channels, 1, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.cheap_operation = ConvModule(init_channels, cheap_channels, dw_size, padding=dw_size // 2,
                                          groups=init_channels, norm_cfg=norm_cfg, act_cfg=act_cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.primary_conv(x)
        out = torch.cat([x1, self.cheap_operation(x1)], dim=1)
        return out if out.shape[1] == self.out_channels else out[:, :self.out_channels]


class GhostBottleneck(nn.Module):
    """Ghost module (with act) -> optional stride-2 depthwise conv -> ghost module (linear), plus a shortcut.

    The shortcut is the identity when shapes match, else a ``dw_kernel_size`` depthwise conv (with the stride) and a
    1x1 conv, each followed by a norm.
    """

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, dw_kernel_size: int = 3,
                 stride: int = 1, norm_cfg: dict = dict(type='BN'),
                 act_cfg: Optional[dict] = dict(type='LeakyReLU', negative_slope=0.1)) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f'GhostBottleneck stride must be 1 or 2, got {stride}')
        self.ghost1 = GhostModule(in_channels, mid_channels, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.conv_dw = (ConvModule(mid_channels, mid_channels, dw_kernel_size, stride=2, padding=dw_kernel_size // 2,
                                   groups=mid_channels, norm_cfg=norm_cfg, act_cfg=None) if stride == 2 else None)
        self.ghost2 = GhostModule(mid_channels, out_channels, norm_cfg=norm_cfg, act_cfg=None)
        if in_channels == out_channels and stride == 1:
            self.shortcut: nn.Module = nn.Identity()
        else:
            self.shortcut = nn.Sequential(
                ConvModule(in_channels, in_channels, dw_kernel_size, stride=stride, padding=dw_kernel_size // 2,
                           groups=in_channels, norm_cfg=norm_cfg, act_cfg=None),
                ConvModule(in_channels, out_channels, 1, norm_cfg=norm_cfg, act_cfg=None))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.ghost1(x)
        if self.conv_dw is not None:
            y = self.conv_dw(y)
        return self.ghost2(y) + self.shortcut(x)


class GhostBlocks(nn.Module):
    """``num_blocks`` ghost bottlenecks (``expand`` x the output width inside) fusing a concatenation of two levels.

    With ``use_res`` a 1x1 conv of the input is added to the output (NanoDet-Plus's option; off by default).
    """

    def __init__(self, in_channels: int, out_channels: int, expand: float = 1.0, kernel_size: int = 5,
                 num_blocks: int = 1, use_res: bool = False, norm_cfg: dict = dict(type='BN'),
                 act_cfg: Optional[dict] = dict(type='LeakyReLU', negative_slope=0.1)) -> None:
        super().__init__()
        if num_blocks < 1:
            raise ValueError(f'GhostBlocks num_blocks must be >= 1, got {num_blocks}')
        self.reduce_conv = (ConvModule(in_channels, out_channels, 1, norm_cfg=norm_cfg, act_cfg=act_cfg)
                            if use_res else None)
        mid = int(out_channels * expand)
        self.blocks = nn.Sequential(*[
            GhostBottleneck(in_channels if i == 0 else out_channels, mid, out_channels, dw_kernel_size=kernel_size,
                            norm_cfg=norm_cfg, act_cfg=act_cfg) for i in range(num_blocks)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.blocks(x)
        return out + self.reduce_conv(x) if self.reduce_conv is not None else out
