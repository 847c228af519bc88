"""The network skeleton shared by DetNAS, ShuffleNetV2+ and OneShot: one builder reading a :class:`SearchedArch`.

Layout (module names and output indices of the project convention)::

    conv1       3x3 stride-2 conv + BN + act (stem, no max-pool)       \\ out 0, stride 4
    stage1      stride-2 unit + (repeats[0] - 1) stride-1 units         /
    stage2..4   the same                                                out 1..3, strides 8, 16, 32
    conv_last   1x1 conv + BN + act                                     out 4, stride 32

The units are :class:`~shufflenet_det.models.backbones.spos_blocks.SearchedShuffleBlock`; their channel routing (and
how it relates to the official implementation) is documented there. A family only declares how its ``arch`` argument
is parsed (:attr:`SearchedShuffleBackbone.parse_arch`) and which encoding ``arch=None`` builds
(:attr:`SearchedShuffleBackbone.default_arch`); the constructor is this one.
"""
from __future__ import annotations

from typing import Any, ClassVar, Mapping, Optional, Sequence

from torch import nn

from ..layers import conv_norm_act
from .archs.searched import NUM_STAGES, SearchedArch
from .base import ShuffleBackboneBase
from .spos_blocks import SearchedShuffleBlock

STAGE_NAMES: tuple[str, ...] = tuple(f'stage{i + 1}' for i in range(NUM_STAGES))
#: Per output index, the child modules producing it (output 0 = the stem and the first stage).
OUTPUT_STAGE_MODULES: tuple[tuple[str, ...], ...] = (('conv1', 'stage1'), ('stage2',), ('stage3',), ('stage4',),
                                                     ('conv_last',))
OUTPUT_STRIDES: tuple[int, ...] = (4, 8, 16, 32, 32)


class SearchedShuffleBackbone(ShuffleBackboneBase):
    """Build stem, four stages of searched units and the last 1x1 conv from an encoding (see module docstring).

    Args:
        arch: a published name of the family, a dict encoding, or ``None`` for :attr:`default_arch`.
        out_indices: outputs to return: 0-3 the four stages (strides 4, 8, 16, 32), 4 the last 1x1 conv.
        act_cfg: ``None`` (default) keeps the activations of the encoding (ReLU everywhere in DetNAS and OneShot,
            ReLU / h-swish per position in ShuffleNetV2+); a config replaces every one of them, e.g.
            ``dict(type='ReLU')`` for hardware without h-swish. A squeeze-excitation keeps its ReLU squeeze and
            hard-sigmoid gate.
        **kwargs: the other contract arguments of
            :class:`~shufflenet_det.models.backbones.base.ShuffleBackboneBase` (``frozen_stages``: k freezes output
            stages 0..k, output stage 0 being the stem and stage 1; ``conv_cfg``, ``norm_cfg`` of every conv / norm,
            the squeeze-excitation's included; ``norm_eval``, ``with_cp``, ``init_cfg``).
    """

    #: Name of the published encoding built for ``arch=None``.
    default_arch: ClassVar[str]
    #: Validates ``arch`` (a published name or a dict encoding) into a :class:`SearchedArch`; a family assigns
    #: ``staticmethod(parser)`` (the annotation is only read by type checkers: ``staticmethod`` is not subscriptable
    #: at run time).
    parse_arch: ClassVar[staticmethod[[str | Mapping], SearchedArch]]

    def __init__(self,
                 arch: Optional[str | Mapping] = None,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 act_cfg: Optional[dict] = None,
                 **kwargs: Any) -> None:
        spec = self.parse_arch(self.default_arch if arch is None else arch)
        super().__init__(out_indices=out_indices, act_cfg=act_cfg, **kwargs)
        self.arch = spec
        cfg: dict[str, Any] = dict(conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg)

        def act(published: str) -> dict:
            return dict(self.act_cfg) if self.act_cfg is not None else dict(type=published)

        def build_units(stage: int, in_channels: int, out_channels: int) -> list[nn.Module]:
            return [SearchedShuffleBlock(in_channels if j == 0 else out_channels, out_channels,
                                         stride=2 if j == 0 else 1, choice=spec.choices[unit],
                                         mid_channels=spec.mid_channels[unit], act_cfg=act(spec.stage_acts[stage]),
                                         with_se=spec.se_stages[stage], **cfg)
                    for j, unit in enumerate(spec.stage_blocks(stage))]

        self._add_stem(spec.stem_channels, act(spec.stem_act), with_maxpool=False)
        last = self._add_stages(STAGE_NAMES, spec.stem_channels, spec.stage_channels, build_units)
        self.conv_last = nn.Sequential(*conv_norm_act(last, spec.last_channels, 1, act_cfg=act(spec.last_act),
                                                      **cfg))
        self._set_outputs(OUTPUT_STAGE_MODULES, tuple(spec.stage_channels) + (spec.last_channels,), OUTPUT_STRIDES)
