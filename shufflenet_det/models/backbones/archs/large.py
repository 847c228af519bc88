"""ShuffleNetV2.Large and ShuffleNetV2.ExLarge ("deeper versions of ShuffleNetV2", megvii-model/ShuffleNet-Series
``ShuffleNetV2.Large/network.py`` and ``ShuffleNetV2.ExLarge/network.py``) as data, and the parser that validates
user encodings.

Both networks build ShuffleNet V2 units (Ma et al., arXiv 1807.11164) with a dense grouped 3x3 conv in the main
branch and a squeeze-excitation (Hu et al., arXiv 1709.01507) on it, and a residual add in every unit but the first of
a stage. The two differ in how a unit is wired, which :data:`LARGE_LAYOUTS` records as flags read by one builder
(:mod:`shufflenet_det.models.backbones.shufflenet_v2_large`); the widths and depths are in
:data:`SHUFFLENET_V2_LARGE_ARCHS`:

=====================  ==========================================  ===========================================
flag                   Large                                       ExLarge
=====================  ==========================================  ===========================================
``first_input``        ``'halves'``: even channels -> projection,  ``'whole'``: the whole input feeds both
                       odd channels -> main branch                 branches
``main_expansion``     1: main width = half the unit output        2: main width = the unit output
``main_depthwise``     False: 1x1 -> grouped 3x3 -> 1x1            True: 1x1 -> grouped 3x3 -> dw 3x3 -> 1x1
``proj_act``           False: 3x3 projection + BN                  True: 3x3 projection + BN + act
``merge``              ``'concat'``: act(cat(left, right))         ``'residual'``: cat(left, act(odd + main)),
                                                                   cat(proj, main) in the first unit
``down_conv``          True: 1x1 conv + BN + act after a           False
                       stride-2 unit
``stage_conv``         False                                       True: 1x1 conv + BN + act ends every stage
last conv              3x3 -> 1280 (output 4)                      none (4 outputs)
BN eps                 1e-9                                        1e-5
SE reduction           1 (two full-width layers)                   4
=====================  ==========================================  ===========================================

An encoding is a published name (``'Large'``, ``'ExLarge'``) or a dict ``{'base': 'Large' | 'ExLarge', ...}`` that
takes the base's layout and overrides any of its numbers (``stem_channels`` (3), ``stage_channels`` (4),
``repeats`` (4), ``groups``, ``last_channels`` (Large only), ``se_reduction``, ``bn_eps``), e.g. a narrow network
of the Large layout for tests. Every parser error is a ``ValueError`` naming the field and what is allowed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

NUM_STAGES = 4

#: Unit wiring of each base layout (see the module docstring).
LARGE_LAYOUTS: dict[str, dict] = {
    'Large': dict(first_input='halves', main_expansion=1, main_depthwise=False, proj_act=False, merge='concat',
                  down_conv=True, stage_conv=False),
    'ExLarge': dict(first_input='whole', main_expansion=2, main_depthwise=True, proj_act=True, merge='residual',
                    down_conv=False, stage_conv=True),
}

#: Published widths and depths: stem convs, stage outputs (strides 4/8/16/32), units per stage, groups of the main
#: branch's 3x3 conv, last conv (Large: 3x3 -> 1280; ExLarge: none), SE reduction and the official BN eps.
SHUFFLENET_V2_LARGE_ARCHS: dict[str, dict] = {
    'Large': dict(stem_channels=(64, 64, 128), stage_channels=(256, 512, 1024, 2048), repeats=(10, 10, 23, 10),
                  groups=8, last_channels=1280, se_reduction=1, bn_eps=1e-9),
    'ExLarge': dict(stem_channels=(64, 128, 256), stage_channels=(320, 640, 1280, 2560), repeats=(8, 16, 36, 10),
                    groups=16, last_channels=None, se_reduction=4, bn_eps=1e-5),
}

_FAMILY = 'ShuffleNetV2Large'
_NUMBERS = ('stem_channels', 'stage_channels', 'repeats', 'groups', 'last_channels', 'se_reduction', 'bn_eps')


@dataclass(frozen=True)
class LargeArch:
    """A validated encoding: the base layout's flags and the numbers."""

    base: str
    stem_channels: tuple[int, int, int]
    stage_channels: tuple[int, ...]
    repeats: tuple[int, ...]
    groups: int
    last_channels: Optional[int]
    se_reduction: int
    bn_eps: float
    first_input: str
    main_expansion: int
    main_depthwise: bool
    proj_act: bool
    merge: str
    down_conv: bool
    stage_conv: bool

    @property
    def num_outputs(self) -> int:
        """4 stages, plus the last conv where the layout has one."""
        return NUM_STAGES + (self.last_channels is not None)

    def stage_inputs(self) -> tuple[int, ...]:
        """Input width of each stage (the stem output, then the previous stage's)."""
        return (self.stem_channels[-1],) + self.stage_channels[:-1]


def _positive_int(field: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f'{_FAMILY} arch[{field!r}]={value!r} must be a positive int')
    return value


def _int_list(field: str, value: Any, length: int) -> tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ValueError(f'{_FAMILY} arch[{field!r}]={value!r} must be a list of {length} positive ints')
    out = tuple(_positive_int(field, v) for v in value)
    if len(out) != length:
        raise ValueError(f'{_FAMILY} arch[{field!r}] has {len(out)} entries, expected {length}')
    return out


def _check_widths(spec: dict) -> None:
    """Every split, group and squeeze of the layout must fit the widths."""
    layout = LARGE_LAYOUTS[spec['base']]
    groups, reduction = spec['groups'], spec['se_reduction']
    if layout['first_input'] == 'halves' and spec['stem_channels'][-1] % 2:
        raise ValueError(f'{_FAMILY} arch["stem_channels"][2]={spec["stem_channels"][-1]} is odd: the first unit '
                         'splits its input into even and odd channels')
    for i, out in enumerate(spec['stage_channels']):
        if out % 2:
            raise ValueError(f'{_FAMILY} arch["stage_channels"][{i}]={out} is odd: every unit outputs two halves')
        main = out // 2 * layout['main_expansion']
        if main % groups:
            raise ValueError(f'{_FAMILY} arch: groups={groups} does not divide the {main} channels of the grouped '
                             f'3x3 conv of stage {i + 1} (stage_channels[{i}]={out})')
        if out // 2 // reduction < 1:
            raise ValueError(f'{_FAMILY} arch: se_reduction={reduction} leaves no channel in the squeeze of stage '
                             f'{i + 1} ({out // 2} channels)')


def parse_large_arch(arch: str | Mapping) -> LargeArch:
    """``'Large'``, ``'ExLarge'`` or a dict ``{'base': 'Large' | 'ExLarge', <numbers to override>}``."""
    names = list(SHUFFLENET_V2_LARGE_ARCHS)
    if isinstance(arch, str):
        if arch not in SHUFFLENET_V2_LARGE_ARCHS:
            raise ValueError(f'{_FAMILY}: arch={arch!r} is not a published network; valid names: {names} (or a dict '
                             "encoding with a 'base' key)")
        spec = dict(SHUFFLENET_V2_LARGE_ARCHS[arch], base=arch)
    elif isinstance(arch, Mapping):
        base = arch.get('base')
        unknown = [k for k in arch if k != 'base' and k not in _NUMBERS]
        if base not in SHUFFLENET_V2_LARGE_ARCHS or unknown:
            raise ValueError(f'{_FAMILY} arch dict: needs "base" in {names} (got {base!r}) and only the optional keys '
                             f'{list(_NUMBERS)} (unknown keys: {unknown})')
        spec = dict(SHUFFLENET_V2_LARGE_ARCHS[base], **arch)
    else:
        raise ValueError(f'{_FAMILY}: arch={arch!r} must be one of {names} or a dict encoding with a "base" key')
    spec['stem_channels'] = _int_list('stem_channels', spec['stem_channels'], 3)
    spec['stage_channels'] = _int_list('stage_channels', spec['stage_channels'], NUM_STAGES)
    spec['repeats'] = _int_list('repeats', spec['repeats'], NUM_STAGES)
    spec['groups'] = _positive_int('groups', spec['groups'])
    spec['se_reduction'] = _positive_int('se_reduction', spec['se_reduction'])
    if spec['base'] == 'ExLarge':
        if spec['last_channels'] is not None:
            raise ValueError(f'{_FAMILY} arch: the ExLarge layout has no last conv; last_channels must be None, got '
                             f'{spec["last_channels"]!r}')
    else:
        spec['last_channels'] = _positive_int('last_channels', spec['last_channels'])
    eps = spec['bn_eps']
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not 0 < eps < 1:
        raise ValueError(f'{_FAMILY} arch["bn_eps"]={eps!r} must be a number in (0, 1)')
    spec['bn_eps'] = float(eps)
    _check_widths(spec)
    return LargeArch(**spec, **LARGE_LAYOUTS[spec['base']])
