"""ShuffleNet V2 backbone (Ma et al., "ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture Design",
ECCV 2018, arXiv 1807.11164) in two formulations of the unit, chosen by ``layout``.

Both layouts share the module names and Sequential indices (torchvision's):

* ``conv1.{0 conv, 1 bn, 2 act}``, ``maxpool``;
* ``stage{2,3,4}.{i}``: ``branch1.{0 dw, 1 bn, 2 pw, 3 bn, 4 act}`` (stride-2 units only) and
  ``branch2.{0 pw, 1 bn, 2 act, 3 dw, 4 bn, 5 pw, 6 bn, 7 act}``;
* ``conv5.{0 conv, 1 bn, 2 act}``.

``layout='torchvision'`` (default) is torchvision's ``shufflenetv2``: a stride-1 unit keeps the first half of its
input channels and runs ``branch2`` on the second half; a stride-2 unit feeds the whole input to both branches, each
producing half of the output; the halves are concatenated and shuffled with 2 groups. A torchvision
``shufflenetv2_x*.pth`` state dict without its ``fc.*`` keys loads with ``strict=True`` and gives the same features.

``layout='megvii'`` is the authors' official implementation (megvii-model/ShuffleNet-Series, ``ShuffleNetV2``): a
stride-1 unit keeps the even input channels and runs ``branch2`` on the odd ones (``channel_shuffle(x, c // 2)``
followed by a halves split); a stride-2 unit's projection ``branch1`` keeps the input width and ``branch2`` produces
the remaining ``out - in`` channels (from ``out / 2`` middle channels); the outputs are concatenated without a
shuffle. The two layouts are the same network at 0.5x only: stage 2 starts from the 24-channel stem, so its first unit
splits 24 + 92 (1.0x), 24 + 152 (1.5x) and 24 + 220 (2.0x) channels in the official models instead of two halves.
Official checkpoints convert onto this layout by renaming keys only
(:mod:`shufflenet_det.converters.megvii_v1v2`).

Only slicing, ``cat`` and reshape/transpose are used, so both layouts export to ONNX/ncnn (``Slice``,
``ShuffleChannel``) without data-dependent control flow.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
from mmdet.registry import MODELS
from torch import nn

from ..layers import channel_shuffle, channel_split, conv_norm_act
from .base import ShuffleBackboneBase
from .validation import check_choice, check_unit_stride

#: Architecture of ShuffleNet V2, as data: paper Table 5 channels ``[stem, stage2, stage3, stage4, conv5]`` per width
#: (identical to torchvision's ``stages_out_channels``) and the units per stage.
SHUFFLENET_V2_ARCH: dict = dict(
    stage_repeats=(4, 8, 4),
    stage_names=('stage2', 'stage3', 'stage4'),
    channels={
        0.5: (24, 48, 96, 192, 1024),
        1.0: (24, 116, 232, 464, 1024),
        1.5: (24, 176, 352, 704, 1024),
        2.0: (24, 244, 488, 976, 2048),
    },
    # Unit wiring per ``layout`` (module docstring): ``proj`` = width of a stride-2 unit's projection branch
    # (``'half'`` of the output or the unit's ``'input'`` width); ``interleaved_split`` = a stride-1 unit keeps the
    # even input channels (else the first half); ``shuffle_after`` = shuffle the concatenated output with 2 groups.
    layouts={
        'torchvision': dict(proj='half', interleaved_split=False, shuffle_after=True),
        'megvii': dict(proj='input', interleaved_split=True, shuffle_after=False),
    },
)
#: Layout built when ``layout`` is not given.
DEFAULT_LAYOUT = 'torchvision'


class ShuffleV2Unit(nn.Module):
    """One ShuffleNet V2 unit (paper Fig. 3 (c)/(d)) in either layout (see module docstring).

    Args:
        in_channels, out_channels: unit widths (stride 1 needs ``in_channels == out_channels``, even).
        stride: 1 or 2.
        proj_channels: stride 2 only: output width of the projection ``branch1``; ``branch2`` produces the
            remaining ``out_channels - proj_channels``. ``None`` = ``out_channels // 2`` (torchvision).
        interleaved_split: stride 1 only: keep the even input channels and process the odd ones (official Megvii)
            instead of keeping the first half and processing the second (torchvision).
        shuffle_after: shuffle the concatenated output with 2 groups (torchvision) or not (official Megvii).
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 stride: int,
                 proj_channels: Optional[int] = None,
                 interleaved_split: bool = False,
                 shuffle_after: bool = True,
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: Optional[dict] = None,
                 act_cfg: Optional[dict] = None) -> None:
        super().__init__()
        check_unit_stride(in_channels, out_channels, stride)
        if out_channels % 2:
            raise ValueError(f'out_channels={out_channels} must be even (the unit splits it into two halves)')
        mid = out_channels // 2
        if stride == 1:
            if proj_channels is not None:
                raise ValueError('proj_channels applies to stride-2 units only')
            proj = mid
        else:
            proj = mid if proj_channels is None else proj_channels
            if not 0 < proj < out_channels:
                raise ValueError(f'proj_channels={proj_channels} must be in [1, {out_channels - 1}] '
                                 f'(out_channels={out_channels})')
        self.stride = stride
        self.branch_channels = mid
        self.interleaved_split = bool(interleaved_split)
        self.shuffle_after = bool(shuffle_after)
        cfg: dict[str, Any] = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg)
        if stride == 2:
            self.branch1 = nn.Sequential(
                *conv_norm_act(in_channels, in_channels, 3, stride=stride, groups=in_channels, act_cfg=None,
                               with_act_slot=False, **cfg),
                *conv_norm_act(in_channels, proj, 1, act_cfg=act_cfg, **cfg))
        self.branch2 = nn.Sequential(
            *conv_norm_act(in_channels if stride == 2 else mid, mid, 1, act_cfg=act_cfg, **cfg),
            *conv_norm_act(mid, mid, 3, stride=stride, groups=mid, act_cfg=None, with_act_slot=False, **cfg),
            *conv_norm_act(mid, out_channels - proj, 1, act_cfg=act_cfg, **cfg))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            if self.interleaved_split:  # even channels first, then odd: a static reshape/transpose
                x = channel_shuffle(x, x.shape[1] // 2)
            kept, processed = channel_split(x, self.branch_channels)
            out = torch.cat((kept, self.branch2(processed)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2) if self.shuffle_after else out


@MODELS.register_module()
class ShuffleNetV2(ShuffleBackboneBase):
    """ShuffleNet V2 backbone for MMDetection (arXiv 1807.11164): torchvision's or the official Megvii formulation.

    Outputs (project convention): 0 = ``[conv1, maxpool]`` (stride 4), 1 = ``stage2`` (8), 2 = ``stage3`` (16),
    3 = ``stage4`` (32), 4 = ``conv5`` (32).

    Args:
        widen_factor: width multiplier, one of 0.5, 1.0, 1.5, 2.0 (paper Table 5).
        layout: ``'torchvision'`` (torchvision / mmpretrain weights) or ``'megvii'`` (the official
            ShuffleNet-Series implementation and its checkpoints); see the module docstring. Output channels and
            strides do not depend on it.
        out_indices: output indices to return (see above).
        with_conv5: build the classifier's last 1x1 conv (output 4). ``False`` leaves it out (output 4 then does
            not exist): a detector reading stages 2-4 only, e.g. NanoDet-Plus's backbone (``with_last_conv=False``
            there), whose checkpoints have no such weights.
        **kwargs: the contract arguments of :class:`~shufflenet_det.models.backbones.base.ShuffleBackboneBase`
            (``frozen_stages``, ``conv_cfg``, ``norm_cfg``, ``act_cfg``, ``norm_eval``, ``with_cp``, ``init_cfg``).
            ``act_cfg=None`` puts ``nn.Identity`` in the activation slots, so the state-dict keys do not change.
            ``init_cfg=dict(type='Pretrained', checkpoint='shufflenetv2_x1-5666bf0f80.pth')`` loads torchvision
            weights (their ``fc.*`` keys are reported as unexpected and ignored by mmengine).
    """

    arch = SHUFFLENET_V2_ARCH

    def __init__(self,
                 widen_factor: float = 1.0,
                 layout: str = DEFAULT_LAYOUT,
                 out_indices: Sequence[int] = (1, 2, 3),
                 with_conv5: bool = True,
                 **kwargs: Any) -> None:
        super().__init__(out_indices=out_indices, **kwargs)
        self.widen_factor = check_choice('widen_factor', widen_factor, list(self.arch['channels']))
        self.layout = check_choice('layout', layout, list(self.arch['layouts']))
        wiring = self.arch['layouts'][self.layout]
        channels = self.arch['channels'][float(widen_factor)]
        self.stage_channels = channels
        cfg: dict[str, Any] = dict(conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg, act_cfg=self.act_cfg)

        def build_units(stage: int, in_channels: int, out_channels: int) -> list[ShuffleV2Unit]:
            first = ShuffleV2Unit(in_channels, out_channels, stride=2,
                                  proj_channels=in_channels if wiring['proj'] == 'input' else None,
                                  shuffle_after=wiring['shuffle_after'], **cfg)
            return [first] + [ShuffleV2Unit(out_channels, out_channels, stride=1,
                                            interleaved_split=wiring['interleaved_split'],
                                            shuffle_after=wiring['shuffle_after'], **cfg)
                              for _ in range(self.arch['stage_repeats'][stage] - 1)]

        self._add_stem(channels[0], self.act_cfg, with_maxpool=True)
        last = self._add_stages(self.arch['stage_names'], channels[0], channels[1:4], build_units)
        stage_modules: list[tuple[str, ...]] = [('conv1', 'maxpool'), ('stage2',), ('stage3',), ('stage4',)]
        if with_conv5:
            self.conv5 = nn.Sequential(*conv_norm_act(last, channels[4], 1, **cfg))
            stage_modules.append(('conv5',))
        self._set_outputs(stage_modules=stage_modules, channels=channels[:len(stage_modules)],
                          strides=(4, 8, 16, 32, 32)[:len(stage_modules)])
