"""ShuffleNet V1 backbone (Zhang et al., "ShuffleNet: An Extremely Efficient Convolutional Neural Network for Mobile
Devices", CVPR 2018, arXiv 1707.01083).

The module structure mirrors the official Megvii implementation (megvii-model/ShuffleNet-Series, ``ShuffleNetV1``) so
its ImageNet weights convert by renaming keys only (``first_conv`` -> ``conv1``, ``features.N`` -> ``stage{2,3,4}.i``):

* stem ``conv1`` = 3x3 stride-2 conv (not grouped) + BN + act, then ``maxpool`` 3x3 stride 2;
* stages 2/3/4 with 4/8/4 units, the first of each with stride 2;
* unit: ``branch_main_1`` = 1x1 conv (grouped, except the first unit of stage 2) + BN + act, 3x3 depthwise conv
  (carrying the stride) + BN; then the channel shuffle (only when ``groups > 1``); then ``branch_main_2`` = grouped
  1x1 conv + BN (linear). Bottleneck width = unit output channels / 4;
* stride 1: ``act(main + x)``; stride 2: ``cat(branch_proj(x), act(main))`` with ``branch_proj`` a 3x3 stride-2
  average pool and ``main`` producing ``out - in`` channels. (The paper draws "concat, then ReLU"; the official code
  applies the activation to the main branch only. With ReLU both are identical because the unit input is the output
  of a ReLU; for other activations the official formulation is kept, so converted weights keep their meaning.)

The channel shuffle follows the official formulation: a tensor of ``c`` channels is viewed as ``(c // g, g)`` and
transposed, i.e. ``channel_shuffle(x, c // g)`` of :mod:`shufflenet_det.models.layers`. Like the paper's ``(g, c/g)``
shuffle it sends the channels of every group to every group of the next grouped conv.

Channels: see :data:`SHUFFLENET_V1_ARCH` and :func:`shufflenet_v1_channels`.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
from mmcv.cnn import build_activation_layer
from mmdet.registry import MODELS
from torch import nn

from ..layers import channel_shuffle, conv_norm_act
from .base import ShuffleBackboneBase
from .validation import check_choice, check_unit_stride

#: Architecture of ShuffleNet V1, as data. Channels are ``[stem, stage2, stage3, stage4]``.
#:
#: * ``official``: the Megvii tables (ShuffleNet-Series ``ShuffleNetV1/network.py``) for groups 3 and 8 at
#:   0.5x-2.0x, used verbatim.
#: * every other (groups, width) pair follows one rule (:func:`shufflenet_v1_channels`): stage 2 = paper Table 1
#:   (1x) channels x width, rounded to the nearest multiple of ``4 * groups`` (ties upward, at least ``4 * groups``)
#:   so that the bottleneck (out / 4) and every grouped 1x1 conv divide by ``groups``; stages 3 and 4 double it.
#:   The stem is ``stem_channels[width]`` (the official per-width stem; 0.25x takes the smallest official stem, 12)
#:   rounded up to a multiple of ``groups`` (the stage-2 stride-2 unit outputs ``stage2 - stem`` channels from a
#:   grouped conv). This rule reproduces all eight official tables, which the tests check.
SHUFFLENET_V1_ARCH: dict = dict(
    stage_repeats=(4, 8, 4),
    stage_names=('stage2', 'stage3', 'stage4'),
    groups=(1, 2, 3, 4, 8),
    widen_factors=(0.25, 0.5, 1.0, 1.5, 2.0),
    paper_stage2_channels={1: 144, 2: 200, 3: 240, 4: 272, 8: 384},
    stem_channels={0.25: 12, 0.5: 12, 1.0: 24, 1.5: 24, 2.0: 48},
    official={
        (3, 0.5): (12, 120, 240, 480),
        (3, 1.0): (24, 240, 480, 960),
        (3, 1.5): (24, 360, 720, 1440),
        (3, 2.0): (48, 480, 960, 1920),
        (8, 0.5): (16, 192, 384, 768),
        (8, 1.0): (24, 384, 768, 1536),
        (8, 1.5): (24, 576, 1152, 2304),
        (8, 2.0): (48, 768, 1536, 3072),
    },
)


def _round_to_multiple(value: float, divisor: int) -> int:
    """Nearest multiple of ``divisor`` (ties upward), at least ``divisor``."""
    return max(divisor, int(value / divisor + 0.5) * divisor)


def _ceil_to_multiple(value: float, divisor: int) -> int:
    return -(-int(round(value)) // divisor) * divisor


def shufflenet_v1_rule_channels(groups: int, widen_factor: float) -> tuple[int, int, int, int]:
    """Channels ``(stem, stage2, stage3, stage4)`` given by the documented rounding rule (see the arch table)."""
    arch = SHUFFLENET_V1_ARCH
    check_choice('groups', groups, arch['groups'])
    check_choice('widen_factor', widen_factor, arch['widen_factors'])
    stage2 = _round_to_multiple(arch['paper_stage2_channels'][groups] * widen_factor, 4 * groups)
    stem = _ceil_to_multiple(arch['stem_channels'][widen_factor], groups)
    return stem, stage2, 2 * stage2, 4 * stage2


def shufflenet_v1_channels(groups: int, widen_factor: float) -> tuple[int, int, int, int]:
    """Channels ``(stem, stage2, stage3, stage4)``: the official table where Megvii published one, else the rule."""
    check_choice('groups', groups, SHUFFLENET_V1_ARCH['groups'])
    check_choice('widen_factor', widen_factor, SHUFFLENET_V1_ARCH['widen_factors'])
    official = SHUFFLENET_V1_ARCH['official'].get((groups, float(widen_factor)))
    return tuple(official) if official is not None else shufflenet_v1_rule_channels(groups, widen_factor)


class ShuffleV1Unit(nn.Module):
    """One ShuffleNet V1 unit (paper Fig. 2 (b) for stride 1, (c) for stride 2), official module layout."""

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 groups: int,
                 stride: int,
                 first_group: bool = False,
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: Optional[dict] = None,
                 act_cfg: Optional[dict] = None) -> None:
        super().__init__()
        check_unit_stride(in_channels, out_channels, stride)
        main_out = out_channels - in_channels if stride == 2 else out_channels
        mid = out_channels // 4
        pw_groups = 1 if first_group else groups
        for name, value in (('in_channels', in_channels), ('bottleneck channels', mid),
                            ('main-branch output channels', main_out)):
            if value <= 0 or value % groups:
                raise ValueError(f'{name}={value} must be a positive multiple of groups={groups}')
        self.stride = stride
        self.groups = groups
        self.mid_channels = mid
        self.branch_main_1 = nn.Sequential(
            *conv_norm_act(in_channels, mid, 1, groups=pw_groups, conv_cfg=conv_cfg, norm_cfg=norm_cfg,
                           act_cfg=act_cfg),
            *conv_norm_act(mid, mid, 3, stride=stride, groups=mid, conv_cfg=conv_cfg, norm_cfg=norm_cfg,
                           act_cfg=None, with_act_slot=False))
        self.branch_main_2 = nn.Sequential(
            *conv_norm_act(mid, main_out, 1, groups=groups, conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=None,
                           with_act_slot=False))
        if stride == 2:
            self.branch_proj = nn.AvgPool2d(kernel_size=3, stride=2, padding=1)
        self.act = build_activation_layer(act_cfg) if act_cfg is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branch_main_1(x)
        if self.groups > 1:
            out = channel_shuffle(out, self.mid_channels // self.groups)
        out = self.branch_main_2(out)
        if self.stride == 1:
            return self.act(out + x)
        return torch.cat((self.branch_proj(x), self.act(out)), dim=1)


@MODELS.register_module()
class ShuffleNetV1(ShuffleBackboneBase):
    """ShuffleNet V1 backbone for MMDetection (arXiv 1707.01083).

    Outputs (project convention): 0 = ``[conv1, maxpool]`` (stride 4), 1 = ``stage2`` (8), 2 = ``stage3`` (16),
    3 = ``stage4`` (32).

    Args:
        groups: group count of the grouped 1x1 convs, one of 1, 2, 3, 4, 8.
        widen_factor: width multiplier, one of 0.25, 0.5, 1.0, 1.5, 2.0. Channels: the official Megvii tables for
            groups 3/8 at 0.5x-2.0x, the documented rounding rule of :data:`SHUFFLENET_V1_ARCH` elsewhere.
        out_indices: output indices to return (see above).
        **kwargs: the contract arguments of :class:`~shufflenet_det.models.backbones.base.ShuffleBackboneBase`
            (``frozen_stages``, ``conv_cfg``, ``norm_cfg``, ``act_cfg``, ``norm_eval``, ``with_cp``, ``init_cfg``);
            ``act_cfg=None`` removes the activations.
    """

    arch = SHUFFLENET_V1_ARCH

    def __init__(self,
                 groups: int = 3,
                 widen_factor: float = 1.0,
                 out_indices: Sequence[int] = (1, 2, 3),
                 **kwargs: Any) -> None:
        super().__init__(out_indices=out_indices, **kwargs)
        self.groups = check_choice('groups', groups, self.arch['groups'])
        self.widen_factor = check_choice('widen_factor', widen_factor, self.arch['widen_factors'])
        channels = shufflenet_v1_channels(groups, widen_factor)
        self.stage_channels = channels
        cfg = dict(conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg, act_cfg=self.act_cfg)

        def build_units(stage: int, in_channels: int, out_channels: int) -> list[nn.Module]:
            return [ShuffleV1Unit(in_channels if i == 0 else out_channels, out_channels, groups,
                                  stride=2 if i == 0 else 1, first_group=stage == 0 and i == 0, **cfg)
                    for i in range(self.arch['stage_repeats'][stage])]

        self._add_stem(channels[0], self.act_cfg, with_maxpool=True)
        self._add_stages(self.arch['stage_names'], channels[0], channels[1:], build_units)
        self._set_outputs(stage_modules=[('conv1', 'maxpool'), ('stage2',), ('stage3',), ('stage4',)],
                          channels=channels, strides=(4, 8, 16, 32))
