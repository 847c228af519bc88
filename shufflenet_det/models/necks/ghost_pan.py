"""GhostPAN: the lightweight path-aggregation neck of the lite detectors.

A PAN (Liu et al., "Path Aggregation Network for Instance Segmentation", CVPR 2018, arXiv 1803.01534) whose fusion
blocks are ghost bottlenecks (GhostNet, arXiv 1911.11907) on the concatenation of two levels, whose downsampling
convs are 5x5 depthwise-separable, and which adds one extra coarser level: the neck of NanoDet-Plus (RangiLyu,
2021, github.com/RangiLyu/nanodet), rebuilt from mmcv blocks. Every operator (1x1 / depthwise convs, bilinear x2
upsampling, concatenation, addition) has an ncnn layer, so pnnx converts the neck as it is.

Layout for inputs ``C_0..C_{L-1}`` (strides s, 2s, ...)::

    reduce_layers[i]      1x1 ConvModule C_i -> out_channels
    top-down              P_i = top_down_blocks(cat(upsample(P_{i+1}), reduced_i))
    bottom-up             N_{i+1} = bottom_up_blocks(cat(downsamples(N_i), P_{i+1}))
    extra level(s)        E = extra_lvl_in_conv(reduced_{L-1} or the last extra input) + extra_lvl_out_conv(N_last)

Input sizes must be divisible by the coarsest input stride (pad with the data preprocessor's ``pad_size_divisor``),
so that a level upsampled by two meets the next one exactly.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
from mmcv.cnn import ConvModule, DepthwiseSeparableConvModule
from mmdet.registry import MODELS
from mmengine.model import BaseModule
from torch import nn

from ..layers.ghost import GhostBlocks


@MODELS.register_module()
class GhostPAN(BaseModule):
    """Ghost path-aggregation neck (see module docstring).

    Args:
        in_channels: channels of the backbone outputs, in increasing stride order (``backbone.out_channels``).
        out_channels: width of every output level.
        kernel_size: kernel of the depthwise convs (fusion blocks' shortcut, downsampling, extra levels).
        expand: ghost bottleneck expansion inside the fusion blocks.
        num_blocks: ghost bottlenecks per fusion block.
        use_res: add a 1x1 conv of each fusion block's input to its output.
        num_extra_level: extra stride-2 levels after the last input (1 in NanoDet-Plus: strides 8-64).
        use_depthwise: depthwise-separable (True) or plain convs for downsampling and the extra levels.
        upsample_cfg: ``nn.Upsample`` arguments of the top-down path (x2; bilinear runs as ncnn ``Interp``).
        norm_cfg, act_cfg: mmcv configs of every conv.
    """

    def __init__(self,
                 in_channels: Sequence[int],
                 out_channels: int,
                 kernel_size: int = 5,
                 expand: float = 1.0,
                 num_blocks: int = 1,
                 use_res: bool = False,
                 num_extra_level: int = 1,
                 use_depthwise: bool = True,
                 upsample_cfg: dict = dict(scale_factor=2, mode='bilinear', align_corners=False),
                 norm_cfg: dict = dict(type='BN'),
                 act_cfg: Optional[dict] = dict(type='LeakyReLU', negative_slope=0.1),
                 init_cfg: Optional[dict | list] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        in_channels = [int(c) for c in in_channels]
        if len(in_channels) < 2 or min(in_channels) < 1:
            raise ValueError(f'GhostPAN in_channels must list >= 2 positive widths (backbone.out_channels), got '
                             f'{in_channels}')
        if out_channels < 1 or num_extra_level < 0 or kernel_size % 2 != 1:
            raise ValueError(f'GhostPAN needs out_channels >= 1, num_extra_level >= 0 and an odd kernel_size; got '
                             f'{out_channels}, {num_extra_level}, {kernel_size}')
        if upsample_cfg.get('scale_factor') != 2:
            raise ValueError(f"GhostPAN upsample_cfg.scale_factor must be 2, got {upsample_cfg.get('scale_factor')}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.num_outs = len(in_channels) + num_extra_level
        fuse: dict[str, Any] = dict(expand=expand, kernel_size=kernel_size, num_blocks=num_blocks, use_res=use_res,
                                    norm_cfg=norm_cfg, act_cfg=act_cfg)
        conv = DepthwiseSeparableConvModule if use_depthwise else ConvModule
        down = dict(kernel_size=kernel_size, stride=2, padding=kernel_size // 2, norm_cfg=norm_cfg, act_cfg=act_cfg)

        self.upsample = nn.Upsample(**upsample_cfg)
        self.reduce_layers = nn.ModuleList(
            ConvModule(c, out_channels, 1, norm_cfg=norm_cfg, act_cfg=act_cfg) for c in in_channels)
        self.top_down_blocks = nn.ModuleList(
            GhostBlocks(out_channels * 2, out_channels, **fuse) for _ in range(len(in_channels) - 1))
        self.downsamples = nn.ModuleList(
            conv(out_channels, out_channels, **down) for _ in range(len(in_channels) - 1))
        self.bottom_up_blocks = nn.ModuleList(
            GhostBlocks(out_channels * 2, out_channels, **fuse) for _ in range(len(in_channels) - 1))
        self.extra_lvl_in_conv = nn.ModuleList(conv(out_channels, out_channels, **down)
                                               for _ in range(num_extra_level))
        self.extra_lvl_out_conv = nn.ModuleList(conv(out_channels, out_channels, **down)
                                                for _ in range(num_extra_level))

    def forward(self, inputs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """``len(in_channels)`` feature maps -> ``num_outs`` maps of ``out_channels`` (increasing stride)."""
        if len(inputs) != len(self.in_channels):
            raise ValueError(f'GhostPAN expects {len(self.in_channels)} inputs, got {len(inputs)}')
        reduced = [layer(x) for layer, x in zip(self.reduce_layers, inputs)]
        # top-down: inner[0] is the finest level once the loop ends
        inner = [reduced[-1]]
        for idx in range(len(reduced) - 1, 0, -1):
            up = self.upsample(inner[0])
            low = reduced[idx - 1]
            if up.shape[2:] != low.shape[2:]:
                raise ValueError(f'GhostPAN: level sizes {tuple(low.shape[2:])} and {tuple(inner[0].shape[2:])} '
                                 'do not differ by exactly 2x; pad the input to a multiple of the coarsest stride '
                                 '(data_preprocessor pad_size_divisor)')
            inner.insert(0, self.top_down_blocks[len(reduced) - 1 - idx](torch.cat([up, low], 1)))
        # bottom-up
        outs = [inner[0]]
        for idx in range(len(reduced) - 1):
            down = self.downsamples[idx](outs[-1])
            outs.append(self.bottom_up_blocks[idx](torch.cat([down, inner[idx + 1]], 1)))
        # extra coarser levels: from the coarsest reduced input and from the last output
        extra_in = reduced[-1]
        for in_conv, out_conv in zip(self.extra_lvl_in_conv, self.extra_lvl_out_conv):
            extra_in = in_conv(extra_in)
            outs.append(extra_in + out_conv(outs[-1]))
        return tuple(outs)
