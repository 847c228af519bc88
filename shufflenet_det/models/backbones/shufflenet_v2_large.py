"""ShuffleNetV2.Large and ShuffleNetV2.ExLarge (megvii-model/ShuffleNet-Series, the "deeper versions of
ShuffleNetV2": 12.7 and 46.2 GFLOPs at 224, 18.56 / 15.52 top-1 error on ImageNet).

ShuffleNet V2 units (Ma et al., "ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture Design", ECCV
2018, arXiv 1807.11164) made deeper and wider: a grouped (not depthwise) 3x3 conv in the main branch, a
squeeze-excitation on it (Hu et al., "Squeeze-and-Excitation Networks", CVPR 2018, arXiv 1709.01507: global pool,
1x1 conv with bias, ReLU, 1x1 conv with bias, sigmoid gate; the official two linear layers) and a residual add of the
processed half. The two layouts and their numbers are data (:mod:`.archs.large`); :class:`LargeShuffleUnit` reads
the flags.

Layout (module names; output indices of the project's stride table)::

    conv1       three 3x3 conv + BN + act (the first with stride 2)          \\
    maxpool     3x3, stride 2                                                  > out 0, stride 4
    stage1      units at stride 4 (the first stage does not downsample)     /
    stage2..4   a stride-2 unit + stride-1 units (ExLarge: + 1x1 conv)         out 1..3, strides 8, 16, 32
    conv_last   3x3 conv + BN + act -> 1280 (Large only)                       out 4, stride 32

Unit ``u`` (``branch_proj`` in the first unit of a stage, ``branch_main`` = pw, BN, act, grouped 3x3 (stage
stride), BN, act, [dw 3x3, BN,] pw, BN, SE; ``down`` only in Large's stride-2 units), with ``even`` / ``odd`` the
even / odd input channels, exactly as the official code routes them (a de-interleave then a halves split, i.e. a
``ShuffleChannel`` with ``C/2`` groups and a ``Slice`` in ONNX / ncnn)::

    Large,   first unit:  y = act(cat(proj(even), main(odd)))  [-> down(y) at stride 2]
    Large,   other units: y = act(cat(even, odd + main(odd)))
    ExLarge, first unit:  y = cat(proj(x), main(x))            (proj ends with an act, main does not)
    ExLarge, other units: y = cat(even, act(odd + main(odd)))

The channel order is the official one everywhere, so converted official weights
(:mod:`shufflenet_det.converters.megvii_large`) give the official stage outputs and last output unpermuted. The
official BN eps (1e-9 in Large) is the default ``norm_cfg``. The training-only auxiliary classifiers at strides 4/8/16
(``predict_56/28/14``) and the ImageNet classifier are not part of the backbone (:class:`ShuffleNetV2LargeHead` is the
classifier, for ImageNet and the complexity analysis).
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import torch
from mmcv.cnn import build_activation_layer, build_conv_layer
from mmdet.registry import MODELS
from torch import nn

from ..layers import channel_shuffle, channel_split, conv_norm_act
from .archs.large import LargeArch, parse_large_arch
from .base import ShuffleBackboneBase
from .validation import check_choice, check_unit_stride

STAGE_NAMES: tuple[str, ...] = ('stage1', 'stage2', 'stage3', 'stage4')
STAGE_STRIDES: tuple[int, ...] = (1, 2, 2, 2)


class SigmoidSqueezeExcite(nn.Module):
    """Squeeze-excitation of Hu et al. (arXiv 1709.01507) as ShuffleNetV2.Large / ExLarge use it.

    ``attention`` = ``0`` global average pool, ``1`` 1x1 conv ``C -> C / reduction`` with bias (official ``se_fc1``),
    ``2`` ReLU, ``3`` 1x1 conv back to ``C`` with bias (``se_fc2``); output ``x * sigmoid(attention(x))``. 1x1 convs on
    the pooled map are the official linear layers (same weights, reshaped; same multiply-adds) and keep the graph 4-D.
    """

    def __init__(self, channels: int, reduction: int = 1, conv_cfg: Optional[dict] = None) -> None:
        super().__init__()
        squeezed = channels // reduction
        if squeezed < 1:
            raise ValueError(f'SigmoidSqueezeExcite: channels={channels} is too small for reduction {reduction}')
        self.attention = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            build_conv_layer(conv_cfg, channels, squeezed, 1, bias=True),
            nn.ReLU(inplace=True),
            build_conv_layer(conv_cfg, squeezed, channels, 1, bias=True))
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.attention(x))


def _act(act_cfg: Optional[dict]) -> nn.Module:
    return build_activation_layer(act_cfg) if act_cfg is not None else nn.Identity()


class LargeShuffleUnit(nn.Module):
    """One unit of ShuffleNetV2.Large / ExLarge, wired by the layout flags of ``arch`` (module docstring).

    Args:
        in_channels: input width (the whole tensor).
        out_channels: output width, even; a unit other than the first of a stage needs ``in_channels ==
            out_channels``.
        stride: 1 or 2 (2 only in a first unit: the first unit of stages 2-4).
        first: the first unit of a stage (projection branch, no residual).
        arch: the parsed encoding (layout flags, groups, SE reduction).
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 stride: int,
                 first: bool,
                 arch: LargeArch,
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: Optional[dict] = None,
                 act_cfg: Optional[dict] = dict(type='ReLU')) -> None:
        super().__init__()
        check_choice('stride', stride, (1, 2))
        if not first:  # a residual unit keeps its width and resolution
            check_unit_stride(in_channels, out_channels, stride)
            if stride != 1:
                raise ValueError(f'stride={stride}: only the first unit of a stage may downsample (the others add '
                                 'their input to the main branch), so first=False needs stride 1')
        self.split = not first or arch.first_input == 'halves'  # even / odd input halves (else the whole input)
        if out_channels % 2 or (self.split and in_channels % 2):
            raise ValueError(f'in_channels={in_channels} / out_channels={out_channels}: the unit splits its channels '
                             'into two halves, they must be even')
        self.in_channels, self.out_channels, self.stride, self.first = in_channels, out_channels, stride, first
        self.residual = not first
        self.merge = arch.merge
        half = out_channels // 2
        main_in = in_channels // 2 if self.split else in_channels
        width = half * arch.main_expansion
        cfg: dict[str, Any] = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg)
        if first:
            self.branch_proj = nn.Sequential(*conv_norm_act(main_in, half, 3, stride=stride,
                                                            act_cfg=act_cfg if arch.proj_act else None,
                                                            with_act_slot=arch.proj_act, **cfg))
        main = [*conv_norm_act(main_in, width, 1, act_cfg=act_cfg, **cfg),
                *conv_norm_act(width, width, 3, stride=stride, groups=arch.groups, act_cfg=act_cfg, **cfg)]
        if arch.main_depthwise:
            main += conv_norm_act(width, width, 3, groups=width, act_cfg=None, with_act_slot=False, **cfg)
        main += conv_norm_act(width, half, 1, act_cfg=None, with_act_slot=False, **cfg)
        main.append(SigmoidSqueezeExcite(half, arch.se_reduction, conv_cfg=conv_cfg))
        self.branch_main = nn.Sequential(*main)
        # the activation of the merge: on the concat (Large) or on the residual sum (ExLarge, not in a first unit)
        self.merge_act = _act(act_cfg) if self.merge == 'concat' or self.residual else nn.Identity()
        self.with_down = arch.down_conv and stride == 2
        if self.with_down:
            self.down = nn.Sequential(*conv_norm_act(out_channels, out_channels, 1, act_cfg=act_cfg, **cfg))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.split:  # even channels, then odd ones: the official routing
            left, right = channel_split(channel_shuffle(x, x.shape[1] // 2), x.shape[1] // 2)
        else:
            left = right = x
        main = self.branch_main(right)
        if self.residual:
            main = right + main
        if self.first:
            left = self.branch_proj(left)
        if self.merge == 'concat':
            out = self.merge_act(torch.cat((left, main), dim=1))
        else:
            out = torch.cat((left, self.merge_act(main)), dim=1)
        return self.down(out) if self.with_down else out

    def extra_repr(self) -> str:
        return f'{self.in_channels}, {self.out_channels}, stride={self.stride}, first={self.first}'


@MODELS.register_module()
class ShuffleNetV2Large(ShuffleBackboneBase):
    """ShuffleNetV2.Large / ShuffleNetV2.ExLarge backbone (module docstring).

    Outputs: 0 = ``[conv1, maxpool, stage1]`` (stride 4; 256 / 320 channels), 1-3 = ``stage2..4`` (strides 8, 16,
    32), 4 = ``conv_last`` (Large only: 1280 channels at stride 32; ExLarge has 4 outputs).

    Args:
        arch: ``'Large'`` (default), ``'ExLarge'``, or a dict ``{'base': 'Large' | 'ExLarge', ...}`` overriding the
            base's numbers (:func:`~shufflenet_det.models.backbones.archs.large.parse_large_arch`).
        out_indices: outputs to return (see above).
        norm_cfg: ``None`` (default): BN with the official eps of the layout (1e-9 in Large, 1e-5 in ExLarge), which
            converted weights need to compute the official function; a config is used as given (keep ``eps=1e-9``
            for Large weights, e.g. ``dict(type='SyncBN', eps=1e-9)``).
        **kwargs: the other contract arguments of
            :class:`~shufflenet_det.models.backbones.base.ShuffleBackboneBase` (``frozen_stages``, ``conv_cfg`` of every
            conv, the SE's included; ``act_cfg`` of every activation outside the SE (default ReLU; ``None`` leaves
            ``nn.Identity`` in the slots); ``norm_eval``, ``with_cp``, ``init_cfg``). Official weights convert with
            ``tools/model_converters/convert_weights.py --src megvii --type ShuffleNetV2Large --arch Large IN OUT``.
    """

    def __init__(self,
                 arch: str | Mapping = 'Large',
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 norm_cfg: Optional[dict] = None,
                 **kwargs: Any) -> None:
        spec = parse_large_arch(arch)
        super().__init__(out_indices=out_indices,
                         norm_cfg=dict(type='BN', eps=spec.bn_eps) if norm_cfg is None else norm_cfg, **kwargs)
        self.arch = spec
        cfg: dict[str, Any] = dict(conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg)
        stem = spec.stem_channels
        self.conv1 = nn.Sequential(*conv_norm_act(3, stem[0], 3, stride=2, act_cfg=self.act_cfg, **cfg),
                                   *conv_norm_act(stem[0], stem[1], 3, act_cfg=self.act_cfg, **cfg),
                                   *conv_norm_act(stem[1], stem[2], 3, act_cfg=self.act_cfg, **cfg))
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

        def build_units(stage: int, in_channels: int, out_channels: int) -> list[nn.Module]:
            units: list[nn.Module] = [
                LargeShuffleUnit(in_channels if j == 0 else out_channels, out_channels,
                                 STAGE_STRIDES[stage] if j == 0 else 1, j == 0, spec, act_cfg=self.act_cfg, **cfg)
                for j in range(spec.repeats[stage])]
            if spec.stage_conv:
                units.append(nn.Sequential(*conv_norm_act(out_channels, out_channels, 1, act_cfg=self.act_cfg,
                                                          **cfg)))
            return units

        last = self._add_stages(STAGE_NAMES, stem[-1], spec.stage_channels, build_units)
        stage_modules: list[tuple[str, ...]] = [('conv1', 'maxpool', 'stage1'), ('stage2',), ('stage3',),
                                                ('stage4',)]
        channels, strides = list(spec.stage_channels), [4, 8, 16, 32]
        if spec.last_channels is not None:
            self.conv_last = nn.Sequential(*conv_norm_act(last, spec.last_channels, 3, act_cfg=self.act_cfg, **cfg))
            stage_modules.append(('conv_last',))
            channels.append(spec.last_channels)
            strides.append(32)
        self._set_outputs(stage_modules, channels, strides)


class ShuffleNetV2LargeHead(nn.Module):
    """The official ImageNet classifier on the last output: global average pool (the official 7x7 average pool at
    224), dropout 0.2, ``Linear(C, num_classes)`` with bias (Large: ``fc`` on ``conv_last``'s 1280 channels;
    ExLarge: ``fc.fc`` on stage 4's 2560)."""

    def __init__(self, in_channels: int, num_classes: int = 1000, bias: bool = True, dropout: float = 0.2) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_channels, num_classes, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(x.mean((2, 3))))
