"""Searched ShuffleNet units shared by DetNAS, ShuffleNetV2+ and OneShot (SPOS).

The block space comes from "Single Path One-Shot Neural Architecture Search with Uniform Sampling" (Guo et al.,
arXiv 1904.00420) and is reused by DetNAS (Chen et al., arXiv 1903.10979) and ShuffleNetV2+ (megvii-model/
ShuffleNet-Series). Every unit is a ShuffleNet V2 unit (Ma et al., arXiv 1807.11164) whose main branch is one of four
choices:

====  ================  ==========================================================================================
id    name              main branch (``branch_main`` indices)
====  ================  ==========================================================================================
0     shufflenet_3x3    ``0`` pw in->mid, ``1`` BN, ``2`` act, ``3`` dw kxk (stride), ``4`` BN, ``5`` pw mid->out,
1     shufflenet_5x5    ``6`` BN, ``7`` act (k = 3, 5, 7)
2     shufflenet_7x7
3     xception_3x3      three (dw 3x3 + BN, pw + BN, act) triples, indices ``0..14``; only the first dw has the
                        stride; pw: in->mid, mid->mid, mid->out
====  ================  ==========================================================================================

A stride-2 unit also has ``branch_proj``: ``0`` dw kxk (the choice's kernel, stride 2), ``1`` BN, ``2`` pw in->in,
``3`` BN, ``4`` act; its main branch outputs ``out - in`` channels. A stride-1 unit runs its main branch on half of
the channels and passes the other half through. An optional squeeze-excitation (:class:`SqueezeExcite`, ShuffleNetV2+
stages 3-4) is the last item of ``branch_main``. The indices equal the official ``branch_main``/``branch_proj``
indices of ShuffleNetV2+ and OneShot, and every BN directly follows its conv inside an ``nn.Sequential`` (the SE's
included), so :func:`~shufflenet_det.models.layers.fold_batchnorm` folds all of them.

Channel routing, and why it is not torchvision's ``channel_shuffle(2)``
-----------------------------------------------------------------------
The official implementation shuffles at the *input* of a stride-1 unit: even channels are passed through, odd
channels feed the main branch, and the outputs are concatenated without a shuffle. Here every unit splits by slicing
and shuffles *after* the concat, as torchvision's ShuffleNet V2 does, which exports to ONNX ``Slice``/``Concat``/
``Reshape``/``Transpose`` and to ncnn ``Slice``/``Concat``/``ShuffleChannel`` with no strided slicing and no 5-D
tensors::

    stride 1:  left, right = x[:, :C/2], x[:, C/2:];  y = D(cat(left, main(right)))
    stride 2:  y = D(cat(proj(x), main(x)))

The shuffle ``D`` is the de-interleave ``D(z)[i] = z[2i]``, ``D(z)[C/2 + i] = z[2i + 1]``, i.e.
``channel_shuffle(z, groups=C/2)``, the inverse of torchvision's ``channel_shuffle(z, 2)``; pnnx lowers it to an
ncnn ``ShuffleChannel`` with ``group=C/2`` (static-shape export; with dynamic shapes pnnx keeps Reshape/Permute, as it
does for torchvision's shuffle). With ``D`` the two formulations are exactly equivalent: if this unit's input is
``D(x)`` for the official input ``x``, its halves are the official even/odd channels (``D(x)[:C/2] = x[0::2]``) in
the official order, the concat equals the official output ``x'`` and the unit returns ``D(x')``. By induction every
unit output (so every stage output) equals ``D`` of the official one, with the official weights unchanged; only the
layers that read a stage output directly (the first convs of the next stage's stride-2 unit, ``conv_last``) see
their input channels permuted, which :mod:`shufflenet_det.converters.megvii_searched` applies.

torchvision's ``channel_shuffle(2)`` after the concat cannot be made equivalent by any weight permutation once the
projection branch of a stride-2 unit is narrower than ``C/2`` (these networks give it the ``in`` input channels,
e.g. 16 of 64): the shuffle interleaves ``proj`` only into the first half, so the next unit's main branch would see
no projection channel while the official one sees ``in/2`` of them. ``D`` is the shuffle that keeps the function.
"""
from __future__ import annotations

from typing import Any, Optional

import torch
from mmcv.cnn import build_activation_layer, build_conv_layer, build_norm_layer
from torch import nn

from ..layers import channel_shuffle, channel_split, conv_norm_act
from .validation import check_unit_stride

#: Choice ids of the searched block space, in the order of the official ``blocks_key``.
BLOCK_CHOICES: tuple[str, ...] = ('shufflenet_3x3', 'shufflenet_5x5', 'shufflenet_7x7', 'xception_3x3')
#: Depthwise kernel of each choice (xception uses three 3x3 depthwise convs).
CHOICE_KERNELS: dict[str, int] = {'shufflenet_3x3': 3, 'shufflenet_5x5': 5, 'shufflenet_7x7': 7,
                                  'xception_3x3': 3}


def deinterleave_channels(x: torch.Tensor) -> torch.Tensor:
    """``D``: even channels first, then odd ones (``channel_shuffle`` with ``C/2`` groups; see module docstring)."""
    return channel_shuffle(x, x.shape[1] // 2)


def deinterleave_index(channels: int) -> torch.Tensor:
    """``d`` with ``D(z) = z[:, d]``: ``d[i] = 2i`` and ``d[C/2 + i] = 2i + 1`` (long tensor of ``channels``)."""
    if channels % 2:
        raise ValueError(f'channels={channels} must be even to de-interleave')
    half = torch.arange(channels // 2)
    return torch.cat((2 * half, 2 * half + 1))


class SqueezeExcite(nn.Module):
    """Squeeze-excitation of ShuffleNetV2+: ``x * hsigmoid(conv(act(bn(conv(avgpool(x))))))``, reduction 4.

    ``attention`` = ``0`` global average pool, ``1`` 1x1 conv C->C/4 (no bias), ``2`` BN, ``3`` act, ``4`` 1x1 conv
    C/4->C (no bias), laid out like the official ``SE_opr``; the gate is ``relu6(z + 3) / 6`` (hard sigmoid).
    """

    def __init__(self, channels: int, conv_cfg: Optional[dict] = None, norm_cfg: Optional[dict] = None,
                 act_cfg: Optional[dict] = None, reduction: int = 4) -> None:
        super().__init__()
        if channels // reduction < 1:
            raise ValueError(f'SqueezeExcite: channels={channels} is too small for reduction {reduction}')
        squeezed = channels // reduction
        self.attention = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            build_conv_layer(conv_cfg, channels, squeezed, 1, bias=False),
            build_norm_layer(norm_cfg if norm_cfg is not None else dict(type='BN'), squeezed)[1],
            build_activation_layer(act_cfg if act_cfg is not None else dict(type='ReLU')),
            build_conv_layer(conv_cfg, squeezed, channels, 1, bias=False))
        self.gate = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.attention(x))


def _main_branch(choice: str, in_channels: int, mid_channels: int, out_channels: int, stride: int,
                 cfg: dict, act_cfg: Optional[dict]) -> list[nn.Module]:
    """The official ``branch_main`` items of ``choice`` (see the table in the module docstring)."""
    if choice == 'xception_3x3':
        return [
            *conv_norm_act(in_channels, in_channels, 3, stride=stride, groups=in_channels, act_cfg=None,
                           with_act_slot=False, **cfg),
            *conv_norm_act(in_channels, mid_channels, 1, act_cfg=act_cfg, **cfg),
            *conv_norm_act(mid_channels, mid_channels, 3, groups=mid_channels, act_cfg=None, with_act_slot=False,
                           **cfg),
            *conv_norm_act(mid_channels, mid_channels, 1, act_cfg=act_cfg, **cfg),
            *conv_norm_act(mid_channels, mid_channels, 3, groups=mid_channels, act_cfg=None, with_act_slot=False,
                           **cfg),
            *conv_norm_act(mid_channels, out_channels, 1, act_cfg=act_cfg, **cfg),
        ]
    kernel = CHOICE_KERNELS[choice]
    return [
        *conv_norm_act(in_channels, mid_channels, 1, act_cfg=act_cfg, **cfg),
        *conv_norm_act(mid_channels, mid_channels, kernel, stride=stride, groups=mid_channels, act_cfg=None,
                       with_act_slot=False, **cfg),
        *conv_norm_act(mid_channels, out_channels, 1, act_cfg=act_cfg, **cfg),
    ]


class SearchedShuffleBlock(nn.Module):
    """One searched ShuffleNet unit (see the module docstring for layout and channel routing).

    Args:
        in_channels: input channels (the full tensor, also for stride 1).
        out_channels: output channels; even. Stride 1 needs ``in_channels == out_channels``; stride 2 needs
            ``out_channels > in_channels`` (the main branch outputs ``out - in``).
        stride: 1 or 2.
        choice: one of :data:`BLOCK_CHOICES`.
        mid_channels: width inside the main branch (``out/2`` in DetNAS/V2+, ``int(out/2 * scale)`` in OneShot).
        act_cfg: activation after every pointwise conv (``None``: none).
        with_se: append a :class:`SqueezeExcite` to the main branch (its squeeze uses ReLU, as officially).
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 stride: int,
                 choice: str,
                 mid_channels: int,
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: Optional[dict] = None,
                 act_cfg: Optional[dict] = dict(type='ReLU'),
                 with_se: bool = False) -> None:
        super().__init__()
        if choice not in BLOCK_CHOICES:
            raise ValueError(f'choice={choice!r} is not supported; allowed values: {list(BLOCK_CHOICES)}')
        check_unit_stride(in_channels, out_channels, stride)
        if out_channels % 2:
            raise ValueError(f'out_channels={out_channels} must be even (the unit splits its channels in halves)')
        if stride == 2 and out_channels <= in_channels:
            raise ValueError(f'a stride-2 unit needs out_channels > in_channels (its main branch outputs '
                             f'out - in channels), got in={in_channels}, out={out_channels}')
        if mid_channels < 1:
            raise ValueError(f'mid_channels={mid_channels} must be >= 1')
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = stride
        self.choice = choice
        self.mid_channels = mid_channels
        self.half_channels = out_channels // 2
        cfg: dict[str, Any] = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg)
        if stride == 2:
            main_in, main_out = in_channels, out_channels - in_channels
        else:
            main_in, main_out = self.half_channels, self.half_channels
        main = _main_branch(choice, main_in, mid_channels, main_out, stride, cfg, act_cfg)
        if with_se:
            main.append(SqueezeExcite(main_out, **cfg))
        self.branch_main = nn.Sequential(*main)
        if stride == 2:
            kernel = CHOICE_KERNELS[choice]
            self.branch_proj = nn.Sequential(
                *conv_norm_act(in_channels, in_channels, kernel, stride=2, groups=in_channels, act_cfg=None,
                               with_act_slot=False, **cfg),
                *conv_norm_act(in_channels, in_channels, 1, act_cfg=act_cfg, **cfg))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            kept, processed = channel_split(x, self.half_channels)
            out = torch.cat((kept, self.branch_main(processed)), dim=1)
        else:
            out = torch.cat((self.branch_proj(x), self.branch_main(x)), dim=1)
        return channel_shuffle(out, self.half_channels)

    def extra_repr(self) -> str:
        return (f'{self.in_channels}, {self.out_channels}, stride={self.stride}, choice={self.choice!r}, '
                f'mid_channels={self.mid_channels}')
