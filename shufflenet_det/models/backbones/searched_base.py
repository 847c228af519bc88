"""The network skeleton shared by DetNAS, ShuffleNetV2+ and OneShot: one builder reading a :class:`SearchedArch`.

Layout (module names and output indices of the project convention)::

    conv1       3x3 stride-2 conv + BN + act (stem, no max-pool)       \\ out 0, stride 4
    stage1      stride-2 unit + (repeats[0] - 1) stride-1 units         /
    stage2..4   the same                                                out 1..3, strides 8, 16, 32
    conv_last   1x1 conv + BN + act                                     out 4, stride 32

The units are :class:`~shufflenet_det.models.backbones.spos_blocks.SearchedShuffleBlock`; their channel routing (and
how it relates to the official implementation) is documented there.
"""
from __future__ import annotations

from typing import Optional, Sequence

from torch import nn

from ..layers import conv_norm_act
from .archs.searched import NUM_STAGES, SearchedArch
from .base import ShuffleBackboneBase
from .spos_blocks import SearchedShuffleBlock

STAGE_NAMES: tuple[str, ...] = tuple(f'stage{i + 1}' for i in range(NUM_STAGES))
OUTPUT_GROUPS: tuple[tuple[str, ...], ...] = (('conv1', 'stage1'), ('stage2',), ('stage3',), ('stage4',),
                                              ('conv_last',))
OUTPUT_STRIDES: tuple[int, ...] = (4, 8, 16, 32, 32)


class SearchedShuffleBackbone(ShuffleBackboneBase):
    """Build stem, four stages of searched units and the last 1x1 conv from ``arch`` (see module docstring).

    Args:
        arch: the validated encoding.
        stem_act_cfg, stage_act_cfgs, last_act_cfg: activation of the stem, of each stage's units (4 entries) and of
            the last conv (``None``: no activation).
        The remaining arguments are those of :class:`ShuffleBackboneBase`.
    """

    def __init__(self,
                 arch: SearchedArch,
                 out_indices: Sequence[int],
                 frozen_stages: int,
                 conv_cfg: Optional[dict],
                 norm_cfg: Optional[dict],
                 act_cfg: Optional[dict],
                 stem_act_cfg: Optional[dict],
                 stage_act_cfgs: Sequence[Optional[dict]],
                 last_act_cfg: Optional[dict],
                 norm_eval: bool,
                 with_cp: bool,
                 init_cfg: Optional[dict | list]) -> None:
        super().__init__(out_indices=out_indices, frozen_stages=frozen_stages, conv_cfg=conv_cfg,
                         norm_cfg=norm_cfg, act_cfg=act_cfg, norm_eval=norm_eval, with_cp=with_cp,
                         init_cfg=init_cfg)
        self.arch = arch
        cfg = dict(conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg)
        self.conv1 = nn.Sequential(*conv_norm_act(3, arch.stem_channels, 3, stride=2, act_cfg=stem_act_cfg, **cfg))
        in_channels = arch.stem_channels
        for stage, name in enumerate(STAGE_NAMES):
            out_channels = arch.stage_channels[stage]
            blocks = []
            for j, unit in enumerate(arch.stage_blocks(stage)):
                blocks.append(SearchedShuffleBlock(
                    in_channels if j == 0 else out_channels, out_channels, stride=2 if j == 0 else 1,
                    choice=arch.choices[unit], mid_channels=arch.mid_channels[unit],
                    act_cfg=stage_act_cfgs[stage], with_se=arch.se_stages[stage], **cfg))
            self.add_module(name, nn.Sequential(*blocks))
            in_channels = out_channels
        self.conv_last = nn.Sequential(*conv_norm_act(in_channels, arch.last_channels, 1, act_cfg=last_act_cfg,
                                                      **cfg))
        self._set_outputs(OUTPUT_GROUPS, tuple(arch.stage_channels) + (arch.last_channels,), OUTPUT_STRIDES)
