"""ESNet, the Enhanced ShuffleNet backbone of PP-PicoDet (Yu et al., "PP-PicoDet: A Better Real-Time Object Detector
on Mobile Devices", arXiv 2111.00902), as PaddleDetection (release 2.6, ``ppdet/modeling/backbones/esnet.py``) builds
it; the variants S / M / L of the legacy PicoDet model zoo are data (:mod:`.archs.esnet`).

ShuffleNet V2 units (Ma et al., arXiv 1807.11164) with a squeeze-excitation (Hu et al., arXiv 1709.01507; 1x1 convs
with bias, ReLU, hard sigmoid, reduction 4) and searched widths. Every conv is bias-free and followed by a BN; ``act``
is ``act_cfg`` (default hard swish, PicoDet's ``act: hard_swish``), ``dw`` a depthwise 3x3 conv::

    conv1      3x3 conv (stride 2), BN, act -> 24; maxpool 3x3 stride 2          out 0, stride 4
    stage2..4  one ESDownUnit (stride 2) then ESUnits (stride 1)                  out 1..3, strides 8, 16, 32

    ESUnit (C -> C, main width m):  x1, x2 = x[:, :C/2], x[:, C/2:]
        p = act(BN(pw(x2)))  (C/2 -> m/2);   d = BN(dw(p))
        y = channel_shuffle(cat(x1, act(BN(pw(SE(cat(p, d)))))), 2)       (m -> C/2: ``conv_linear``)
    ESDownUnit (C_in -> C, main width m):
        a = act(BN(pw(BN(dw_s2(x)))))                  (``conv_dw_1``, ``conv_linear_1``: C_in -> C/2)
        b = act(BN(pw(SE(BN(dw_s2(act(BN(pw(x)))))))))  (``conv_pw_2``: C_in -> m/2, ``conv_dw_2``, ``se``,
                                                          ``conv_linear_2``: m/2 -> C/2)
        y = act(BN(pw(act(BN(dw(cat(a, b)))))))       (``conv_dw_mv1``, ``conv_pw_mv1``; no shuffle)

The channel order is Paddle's everywhere (its ``channel_shuffle(x, 2)`` after the concat of a stride-1 unit is the
project's :func:`~shufflenet_det.models.layers.channel_shuffle` with 2 groups, and the down-sampling unit does not
shuffle), so converted weights give Paddle's stage outputs unpermuted. PicoDet's ``feature_maps: [4, 11, 14]`` (the
last unit of each stage) are ``out_indices=(1, 2, 3)``, the default. Paddle's ``act`` argument leaves the two convs
after the concat of a down-sampling unit (``_conv_dw_mv1``, ``_conv_pw_mv1``) at hard swish whatever it is; here
``act_cfg`` sets them too, which is the same network for every published config (all use ``act: hard_swish``). The
BN is Paddle's (eps 1e-5; Paddle's momentum 0.9 is torch's 0.1): the default ``norm_cfg``.

Parameter names: every Paddle parameter has exactly one counterpart, and the other way round (but the BN counters
``num_batches_tracked``, which Paddle does not have). ``<S>`` = stage 2..4, ``<J>`` = unit 1.. in a stage, ``<L>`` =
a ConvBNLayer name of a unit (``conv_pw``, ``conv_dw``, ``conv_linear``; ``conv_dw_1``, ``conv_linear_1``,
``conv_pw_2``, ``conv_dw_2``, ``conv_linear_2``, ``conv_dw_mv1``, ``conv_pw_mv1``); a PicoDet detector's keys
carry ``backbone.`` in front of both sides::

    PaddleDetection (.pdparams)                     this module (state_dict)
    _conv1._conv.weight                             conv1.0.weight
    _conv1._batch_norm.weight / .bias               conv1.1.weight / .bias
    _conv1._batch_norm._mean / ._variance           conv1.1.running_mean / .running_var
    <S>_<J>._<L>._conv.weight                       stage<S>.<J-1>.<L>.0.weight
    <S>_<J>._<L>._batch_norm.weight / .bias         stage<S>.<J-1>.<L>.1.weight / .bias
    <S>_<J>._<L>._batch_norm._mean / ._variance     stage<S>.<J-1>.<L>.1.running_mean / .running_var
    <S>_<J>._se.conv1.weight / .bias                stage<S>.<J-1>.se.conv1.weight / .bias
    <S>_<J>._se.conv2.weight / .bias                stage<S>.<J-1>.se.conv2.weight / .bias

Every shape is the same on both sides (conv weights OIHW in both frameworks; the SE's squeeze and excitation are 1x1
convs, so nothing is transposed: ESNet has no ``Linear``). E.g. ``3_1._conv_dw_mv1._batch_norm._variance`` ->
``stage3.0.conv_dw_mv1.1.running_var``. As a rule: a leading ``<S>_<J>.`` -> ``stage<S>.<J-1>.``, strip the leading
``_`` of each module name, ``_conv.`` -> ``0.``, ``_batch_norm.`` -> ``1.``, ``_mean`` / ``_variance`` ->
``running_mean`` / ``running_var``. Keys outside this pattern (e.g. a classifier in an ImageNet pre-training file)
are not backbone parameters.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import torch
from mmcv.cnn import build_conv_layer
from mmdet.registry import MODELS
from torch import nn

from ..layers import channel_shuffle, channel_split, conv_norm_act
from .archs.esnet import ESNET_SE_REDUCTION, ESNetArch, parse_esnet_arch
from .base import ShuffleBackboneBase
from .validation import check_unit_stride

STAGE_NAMES: tuple[str, ...] = ('stage2', 'stage3', 'stage4')


class ESSqueezeExcite(nn.Module):
    """PP-PicoDet's ``SEModule``: ``x * hardsigmoid(conv2(relu(conv1(avg_pool(x)))))``, 1x1 convs with bias
    ``C -> C / reduction -> C`` (Paddle's names ``conv1`` / ``conv2``; its hard sigmoid is ``relu6(z + 3) / 6``)."""

    def __init__(self, channels: int, reduction: int = ESNET_SE_REDUCTION, conv_cfg: Optional[dict] = None) -> None:
        super().__init__()
        squeezed = channels // reduction
        if squeezed < 1:
            raise ValueError(f'ESSqueezeExcite: channels={channels} is too small for reduction {reduction}')
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv1 = build_conv_layer(conv_cfg, channels, squeezed, 1, bias=True)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = build_conv_layer(conv_cfg, squeezed, channels, 1, bias=True)
        self.gate = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.conv2(self.relu(self.conv1(self.avg_pool(x)))))


def _check_mid(mid_channels: int) -> None:
    if not isinstance(mid_channels, int) or isinstance(mid_channels, bool) or mid_channels < 2 or mid_channels % 2:
        raise ValueError(f'mid_channels={mid_channels!r} must be an even int >= 2 (the main branch is two halves)')


class ESUnit(nn.Module):
    """Paddle's ``InvertedResidual`` of ESNet (stride 1, ``C -> C``; module docstring): ``conv_pw``, ``conv_dw``,
    ``se`` (on ``mid_channels``), ``conv_linear``, each conv an ``nn.Sequential`` of conv, BN[, act]."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, conv_cfg: Optional[dict] = None,
                 norm_cfg: Optional[dict] = None, act_cfg: Optional[dict] = dict(type='HSwish')) -> None:
        super().__init__()
        check_unit_stride(in_channels, out_channels, 1)
        _check_mid(mid_channels)
        if out_channels % 2:
            raise ValueError(f'out_channels={out_channels} must be even: the unit splits its channels into halves')
        self.in_channels, self.mid_channels, self.out_channels = in_channels, mid_channels, out_channels
        cfg: dict[str, Any] = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg)
        half, mid = out_channels // 2, mid_channels // 2
        self.conv_pw = nn.Sequential(*conv_norm_act(half, mid, 1, act_cfg=act_cfg, **cfg))
        self.conv_dw = nn.Sequential(*conv_norm_act(mid, mid, 3, groups=mid, with_act_slot=False, **cfg))
        self.se = ESSqueezeExcite(mid_channels, conv_cfg=conv_cfg)
        self.conv_linear = nn.Sequential(*conv_norm_act(mid_channels, half, 1, act_cfg=act_cfg, **cfg))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = channel_split(x, x.shape[1] // 2)
        p = self.conv_pw(x2)
        y = self.conv_linear(self.se(torch.cat((p, self.conv_dw(p)), dim=1)))
        return channel_shuffle(torch.cat((x1, y), dim=1), 2)

    def extra_repr(self) -> str:
        return f'{self.in_channels}, {self.out_channels}, mid={self.mid_channels}'


class ESDownUnit(nn.Module):
    """Paddle's ``InvertedResidualDS`` of ESNet (stride 2; module docstring): ``conv_dw_1``, ``conv_linear_1``
    (shortcut branch), ``conv_pw_2``, ``conv_dw_2``, ``se`` (on ``mid_channels / 2``), ``conv_linear_2`` (main
    branch), ``conv_dw_mv1``, ``conv_pw_mv1`` (after the concat)."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, conv_cfg: Optional[dict] = None,
                 norm_cfg: Optional[dict] = None, act_cfg: Optional[dict] = dict(type='HSwish')) -> None:
        super().__init__()
        _check_mid(mid_channels)
        if out_channels % 2:
            raise ValueError(f'out_channels={out_channels} must be even: the unit concatenates two halves')
        self.in_channels, self.mid_channels, self.out_channels = in_channels, mid_channels, out_channels
        cfg: dict[str, Any] = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg)
        half, mid = out_channels // 2, mid_channels // 2
        self.conv_dw_1 = nn.Sequential(*conv_norm_act(in_channels, in_channels, 3, stride=2, groups=in_channels,
                                                      with_act_slot=False, **cfg))
        self.conv_linear_1 = nn.Sequential(*conv_norm_act(in_channels, half, 1, act_cfg=act_cfg, **cfg))
        self.conv_pw_2 = nn.Sequential(*conv_norm_act(in_channels, mid, 1, act_cfg=act_cfg, **cfg))
        self.conv_dw_2 = nn.Sequential(*conv_norm_act(mid, mid, 3, stride=2, groups=mid, with_act_slot=False,
                                                      **cfg))
        self.se = ESSqueezeExcite(mid, conv_cfg=conv_cfg)
        self.conv_linear_2 = nn.Sequential(*conv_norm_act(mid, half, 1, act_cfg=act_cfg, **cfg))
        self.conv_dw_mv1 = nn.Sequential(*conv_norm_act(out_channels, out_channels, 3, groups=out_channels,
                                                        act_cfg=act_cfg, **cfg))
        self.conv_pw_mv1 = nn.Sequential(*conv_norm_act(out_channels, out_channels, 1, act_cfg=act_cfg, **cfg))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.conv_linear_1(self.conv_dw_1(x))
        b = self.conv_linear_2(self.se(self.conv_dw_2(self.conv_pw_2(x))))
        return self.conv_pw_mv1(self.conv_dw_mv1(torch.cat((a, b), dim=1)))

    def extra_repr(self) -> str:
        return f'{self.in_channels}, {self.out_channels}, mid={self.mid_channels}, stride=2'


def es_unit(in_channels: int, mid_channels: int, out_channels: int, stride: int, **kwargs: Any) -> nn.Module:
    """The unit of ``stride``: :class:`ESDownUnit` (2) or :class:`ESUnit` (1, ``in_channels == out_channels``)."""
    check_unit_stride(in_channels, out_channels, stride)
    unit = ESDownUnit if stride == 2 else ESUnit
    return unit(in_channels, mid_channels, out_channels, **kwargs)


@MODELS.register_module()
class ESNet(ShuffleBackboneBase):
    """ESNet backbone of PP-PicoDet (module docstring).

    Outputs: 0 = ``[conv1, maxpool]`` (24 channels, stride 4), 1-3 = ``stage2..4`` (strides 8, 16, 32; S: 96 / 192 /
    384, M: 128 / 256 / 512, L: 160 / 320 / 640). There is no last conv (4 outputs).

    Args:
        arch: ``'S'``, ``'M'`` (default), ``'L'`` (PicoDet-S / M / L), or a dict encoding (``scale``,
            ``channel_ratio``, ``repeats``, ``base``:
            :func:`~shufflenet_det.models.backbones.archs.esnet.parse_esnet_arch`).
        out_indices: outputs to return; default ``(1, 2, 3)``, PicoDet's ``feature_maps: [4, 11, 14]``.
        act_cfg: every activation outside the squeeze-excitations (which keep ReLU and hard sigmoid); default
            hard swish (PicoDet's); ``None`` leaves ``nn.Identity`` in the slots.
        **kwargs: the other contract arguments of
            :class:`~shufflenet_det.models.backbones.base.ShuffleBackboneBase` (``frozen_stages``, ``conv_cfg`` of
            every conv, the SE's included; ``norm_cfg``, ``norm_eval``, ``with_cp``, ``init_cfg``).
    """

    def __init__(self,
                 arch: str | Mapping = 'M',
                 out_indices: Sequence[int] = (1, 2, 3),
                 act_cfg: Optional[dict] = dict(type='HSwish'),
                 **kwargs: Any) -> None:
        spec: ESNetArch = parse_esnet_arch(arch)
        super().__init__(out_indices=out_indices, act_cfg=act_cfg, **kwargs)
        self.arch = spec
        self._add_stem(spec.stem_channels, self.act_cfg, with_maxpool=True)
        cfg: dict[str, Any] = dict(conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg, act_cfg=self.act_cfg)

        def build_units(stage: int, in_channels: int, out_channels: int) -> list[nn.Module]:
            return [es_unit(in_channels if j == 0 else out_channels, mid, out_channels, 2 if j == 0 else 1, **cfg)
                    for j, mid in enumerate(spec.mid_channels[stage])]

        self._add_stages(STAGE_NAMES, spec.stem_channels, spec.stage_channels, build_units)
        self._set_outputs([('conv1', 'maxpool'), ('stage2',), ('stage3',), ('stage4',)],
                          (spec.stem_channels, *spec.stage_channels), (4, 8, 16, 32))
