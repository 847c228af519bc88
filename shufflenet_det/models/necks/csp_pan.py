"""CSPPAN: the path-aggregation neck of PP-PicoDet (legacy 2021.10 model zoo), parameter for parameter.

PP-PicoDet (Yu et al., "PP-PicoDet: A Better Real-Time Object Detector on Mobile Devices", arXiv 2111.00902;
PaddleDetection ``ppdet/modeling/necks/csp_pan.py``, release 2.6): every input is reduced to ``out_channels`` by a
1x1 conv (``conv_t``), then a PAN (top-down with nearest x2 upsampling, bottom-up with stride-2 depthwise-separable
convs) whose fusion blocks are CSP layers (YOLOX-style: two 1x1 halves, a Darknet bottleneck of a 1x1 conv and a
5x5 depthwise-separable conv on one half, no identity, a 1x1 on their concatenation), and with ``num_features=4``
one extra stride-2 level: ``first_top_conv(reduced coarsest input) + second_top_conv(coarsest output)``.

Every conv has no bias and is followed by a BN and the activation (Paddle's ``hard_swish``, the legacy configs'
default; ``leaky_relu`` in Paddle is slope 0.01). A depthwise-separable conv is Paddle's ``DP_Module``: depthwise
``dwconv`` -> ``bn1`` -> act -> pointwise ``pwconv`` -> ``bn2`` -> act.

Paddle parameter -> module parameter (``neck.`` prefix on both sides; ``j`` = 0..L-2, ``k`` = bottleneck index).
Names are identical except BatchNorm statistics: Paddle ``<bn>._mean`` / ``<bn>._variance`` are torch
``<bn>.running_mean`` / ``<bn>.running_var`` (``<bn>.weight`` / ``<bn>.bias`` keep their names; torch's
``num_batches_tracked`` has no Paddle counterpart)::

    conv_t.convs.{i}.conv.weight                    conv_t.convs.{i}.conv.weight       1x1 reduce of input i
    conv_t.convs.{i}.bn.{weight,bias,_mean,_variance}  conv_t.convs.{i}.bn.*
    top_down_blocks.{j}.{main_conv,short_conv,final_conv}.{conv,bn}.*      (same)
    top_down_blocks.{j}.blocks.{k}.conv1.{conv,bn}.*                        (same)
    top_down_blocks.{j}.blocks.{k}.conv2.{dwconv,bn1,pwconv,bn2}.*          (same)
    downsamples.{j}.{dwconv,bn1,pwconv,bn2}.*                               (same)
    bottom_up_blocks.{j}.<as top_down_blocks>                               (same)
    first_top_conv.{dwconv,bn1,pwconv,bn2}.*, second_top_conv.<same>        (same; num_features == 4 only)

Folding (mmcv ``fuse_conv_bn``) is exact: each BN is registered right after the conv it follows.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from mmcv.cnn import build_activation_layer
from mmdet.registry import MODELS
from mmengine.model import BaseModule
from torch import nn

from ..layers.fuse import fold_batchnorm


def _act(act_cfg: Optional[dict]) -> nn.Module:
    return build_activation_layer(act_cfg) if act_cfg is not None else nn.Identity()


class ConvBN(nn.Module):
    """Paddle's ``ConvBNLayer``: bias-free conv (``conv``), BN (``bn``), activation."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1,
                 act_cfg: Optional[dict] = None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, (kernel_size - 1) // 2,
                              groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = _act(act_cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class DPModule(nn.Module):
    """Paddle's ``DP_Module``: depthwise ``dwconv`` + ``bn1`` + act, pointwise ``pwconv`` + ``bn2`` + act.

    Paddle's depthwise conv maps ``in_channels -> out_channels`` with ``groups=out_channels``; PicoDet only uses it
    with equal widths, which this module requires.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 act_cfg: Optional[dict] = None) -> None:
        super().__init__()
        if in_channels != out_channels:
            raise ValueError(f'DPModule needs in_channels == out_channels (a depthwise conv), got {in_channels}, '
                             f'{out_channels}')
        self.dwconv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, (kernel_size - 1) // 2,
                                groups=out_channels, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.pwconv = nn.Conv2d(out_channels, out_channels, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.act = _act(act_cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn2(self.pwconv(self.act(self.bn1(self.dwconv(x))))))


class DarknetBottleneck(nn.Module):
    """1x1 ``conv1`` then ``conv2`` (5x5 depthwise-separable or plain), optional identity (PicoDet: none)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, add_identity: bool,
                 use_depthwise: bool, act_cfg: Optional[dict]) -> None:
        super().__init__()
        self.conv1 = ConvBN(in_channels, out_channels, 1, act_cfg=act_cfg)
        self.conv2: nn.Module = (DPModule(out_channels, out_channels, kernel_size, act_cfg=act_cfg) if use_depthwise
                                 else ConvBN(out_channels, out_channels, kernel_size, act_cfg=act_cfg))
        self.add_identity = add_identity and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.conv1(x))
        return out + x if self.add_identity else out


class CSPLayer(nn.Module):
    """Cross-stage-partial block: ``final_conv(cat(blocks(main_conv(x)), short_conv(x)))`` (halves of
    ``out_channels * expand_ratio``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, expand_ratio: float = 0.5,
                 num_blocks: int = 1, add_identity: bool = False, use_depthwise: bool = True,
                 act_cfg: Optional[dict] = None) -> None:
        super().__init__()
        mid = int(out_channels * expand_ratio)
        self.main_conv = ConvBN(in_channels, mid, 1, act_cfg=act_cfg)
        self.short_conv = ConvBN(in_channels, mid, 1, act_cfg=act_cfg)
        self.final_conv = ConvBN(2 * mid, out_channels, 1, act_cfg=act_cfg)
        self.blocks = nn.Sequential(*[DarknetBottleneck(mid, mid, kernel_size, add_identity, use_depthwise, act_cfg)
                                      for _ in range(num_blocks)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_conv(torch.cat([self.blocks(self.main_conv(x)), self.short_conv(x)], dim=1))


class ChannelT(nn.Module):
    """Paddle's ``Channel_T``: one 1x1 ``ConvBN`` per input (``convs``)."""

    def __init__(self, in_channels: Sequence[int], out_channels: int, act_cfg: Optional[dict]) -> None:
        super().__init__()
        self.convs = nn.ModuleList(ConvBN(c, out_channels, 1, act_cfg=act_cfg) for c in in_channels)

    def forward(self, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return [conv(x) for conv, x in zip(self.convs, inputs)]


@MODELS.register_module()
class CSPPAN(BaseModule):
    """CSP path-aggregation neck of PP-PicoDet (see module docstring).

    Args:
        in_channels: widths of the backbone outputs, increasing stride (``backbone.out_channels``).
        out_channels: width of every level (96 PicoDet-S, 128 M, 160 L).
        kernel_size: depthwise kernel of the fusion blocks and the downsampling convs (5).
        num_features: output levels: ``len(in_channels)`` or one more (4: the extra stride-2 level).
        num_csp_blocks: bottlenecks per CSP layer (1).
        use_depthwise: depthwise-separable (``DP_Module``) or plain convs.
        act_cfg: activation after every BN (``HSwish``: Paddle's ``hard_swish``).
        upsample_mode: interpolation of the top-down path (Paddle: ``'nearest'``).
    """

    def __init__(self,
                 in_channels: Sequence[int],
                 out_channels: int,
                 kernel_size: int = 5,
                 num_features: int = 3,
                 num_csp_blocks: int = 1,
                 use_depthwise: bool = True,
                 act_cfg: Optional[dict] = dict(type='HSwish'),
                 upsample_mode: str = 'nearest',
                 init_cfg: Optional[dict | list] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        in_channels = [int(c) for c in in_channels]
        if len(in_channels) < 2 or min(in_channels) < 1 or out_channels < 1 or kernel_size % 2 != 1:
            raise ValueError(f'CSPPAN needs >= 2 positive in_channels, out_channels >= 1 and an odd kernel_size; got '
                             f'{in_channels}, {out_channels}, {kernel_size}')
        if num_features not in (len(in_channels), len(in_channels) + 1):
            raise ValueError(f'CSPPAN num_features must be {len(in_channels)} or {len(in_channels) + 1} (one extra '
                             f'level), got {num_features}')
        self.in_channels = in_channels
        self.out_channels = int(out_channels)
        self.num_features = int(num_features)
        levels = len(in_channels)
        c = self.out_channels

        def down() -> nn.Module:
            return (DPModule(c, c, kernel_size, stride=2, act_cfg=act_cfg) if use_depthwise
                    else ConvBN(c, c, kernel_size, stride=2, act_cfg=act_cfg))

        def csp() -> CSPLayer:
            return CSPLayer(2 * c, c, kernel_size, num_blocks=num_csp_blocks, add_identity=False,
                            use_depthwise=use_depthwise, act_cfg=act_cfg)

        self.conv_t = ChannelT(in_channels, c, act_cfg)
        if self.num_features == levels + 1:
            self.first_top_conv = down()
            self.second_top_conv = down()
        self.upsample = nn.Upsample(scale_factor=2, mode=upsample_mode)
        self.top_down_blocks = nn.ModuleList(csp() for _ in range(levels - 1))
        self.downsamples = nn.ModuleList(down() for _ in range(levels - 1))
        self.bottom_up_blocks = nn.ModuleList(csp() for _ in range(levels - 1))
        self.deployed = False

    def switch_to_deploy(self) -> CSPPAN:
        """Fold every BN into its conv (inference only; mmdet's ``SingleStageDetector`` has no such step, so the
        exporters call it on each part)."""
        fold_batchnorm(self)
        self.eval()
        self.deployed = True
        return self

    def forward(self, inputs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """``len(in_channels)`` maps -> ``num_features`` maps of ``out_channels`` (increasing stride)."""
        if len(inputs) != len(self.in_channels):
            raise ValueError(f'CSPPAN expects {len(self.in_channels)} inputs, got {len(inputs)}')
        reduced = self.conv_t(inputs)
        levels = len(reduced)
        inner = [reduced[-1]]
        for idx in range(levels - 1, 0, -1):
            up = self.upsample(inner[0])
            low = reduced[idx - 1]
            if up.shape[2:] != low.shape[2:]:
                raise ValueError(f'CSPPAN: level sizes {tuple(low.shape[2:])} and {tuple(inner[0].shape[2:])} do '
                                 'not differ by exactly 2x; pad the input to a multiple of the coarsest stride '
                                 '(data_preprocessor pad_size_divisor)')
            inner.insert(0, self.top_down_blocks[levels - 1 - idx](torch.cat([up, low], 1)))
        outs = [inner[0]]
        for idx in range(levels - 1):
            outs.append(self.bottom_up_blocks[idx](torch.cat([self.downsamples[idx](outs[-1]), inner[idx + 1]], 1)))
        if self.num_features == levels + 1:
            outs.append(self.first_top_conv(reduced[-1]) + self.second_top_conv(outs[-1]))
        return tuple(outs)
