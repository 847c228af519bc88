"""ESNet, the Enhanced ShuffleNet of PP-PicoDet (Yu et al., "PP-PicoDet: A Better Real-Time Object Detector on
Mobile Devices", arXiv 2111.00902), as data, and the parser that validates user encodings.

The numbers are PaddleDetection's (release 2.6, ``ppdet/modeling/backbones/esnet.py`` and the legacy PicoDet configs
``configs/picodet/legacy_model/picodet_{s,m,l}_*.yml`` with ``_base_/picodet_esnet.yml``): a 3x3 stride-2 stem of 24
channels and a max-pool, then three stages of ``(3, 7, 3)`` units whose output widths are
``make_divisible(scale * (128, 256, 512), 16)``; the main-branch width of every unit is searched, given per unit as a
``channel_ratio`` of the stage width: ``mid = make_divisible(int(stage_width * ratio), 8)``.

=======  ========================  ==================  ================================================
name     PicoDet (legacy, 2021)    scale               stage widths (strides 8 / 16 / 32)
=======  ========================  ==================  ================================================
``S``    PicoDet-S                 0.75                96 / 192 / 384
``M``    PicoDet-M                 1.0                 128 / 256 / 512
``L``    PicoDet-L                 1.25                160 / 320 / 640
=======  ========================  ==================  ================================================

An encoding is a published name or a dict with any of ``base`` (a published name whose numbers the others
override), ``scale`` (> 0), ``channel_ratio`` (one positive number per unit) and ``repeats`` (units per stage, 3
positive ints); without ``base``, ``channel_ratio`` defaults to all ones and ``repeats`` to ``(3, 7, 3)`` (Paddle's
``ESNet`` defaults) and ``scale`` is required. Every parser error is a ``ValueError`` naming the field and what is
allowed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

#: Stem width (3x3 stride-2 conv), the stage widths before ``scale``, units per stage and the SE reduction.
ESNET_STEM_CHANNELS = 24
ESNET_BASE_CHANNELS: tuple[int, int, int] = (128, 256, 512)
ESNET_REPEATS: tuple[int, int, int] = (3, 7, 3)
ESNET_SE_REDUCTION = 4

_S_RATIO = (0.875, 0.5, 0.5, 0.5, 0.625, 0.5, 0.625, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5)
_ML_RATIO = (0.875, 0.5, 1.0, 0.625, 0.5, 0.75, 0.625, 0.625, 0.5, 0.625, 1.0, 0.625, 0.75)

#: The published ESNets of PP-PicoDet (legacy model zoo): width scale and the searched per-unit channel ratios.
ESNET_ARCHS: dict[str, dict] = {
    'S': dict(scale=0.75, channel_ratio=_S_RATIO),
    'M': dict(scale=1.0, channel_ratio=_ML_RATIO),
    'L': dict(scale=1.25, channel_ratio=_ML_RATIO),
}

_FAMILY = 'ESNet'
_KEYS = ('base', 'scale', 'channel_ratio', 'repeats')


def make_divisible(value: float, divisor: int = 16, min_value: Optional[int] = None) -> int:
    """PaddleDetection's rounding: the nearest multiple of ``divisor`` (at least ``min_value``, default
    ``divisor``), one ``divisor`` more where rounding down lost over 10 %."""
    floor = divisor if min_value is None else min_value
    rounded = max(floor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


@dataclass(frozen=True)
class ESNetArch:
    """A validated encoding and the widths it gives."""

    scale: float
    channel_ratio: tuple[float, ...]
    repeats: tuple[int, ...]
    stem_channels: int
    stage_channels: tuple[int, ...]
    #: main-branch width ``mid`` of every unit, per stage
    mid_channels: tuple[tuple[int, ...], ...]
    se_reduction: int = ESNET_SE_REDUCTION


def _positive_number(field: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f'{_FAMILY} arch[{field!r}]={value!r} must be a positive number')
    return float(value)


def _sequence(field: str, value: Any, what: str) -> Sequence:
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence):
        raise ValueError(f'{_FAMILY} arch[{field!r}]={value!r} must be a list of {what}')
    return value


def _repeats(value: Any) -> tuple[int, ...]:
    out = tuple(_sequence('repeats', value, '3 positive ints'))
    if len(out) != len(ESNET_REPEATS) or any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in out):
        raise ValueError(f'{_FAMILY} arch["repeats"]={value!r} must be a list of 3 positive ints (units of the '
                         'stages at strides 8, 16, 32)')
    return out


def parse_esnet_arch(arch: str | Mapping) -> ESNetArch:
    """``'S'``, ``'M'``, ``'L'`` or a dict encoding (module docstring); returns the widths of every layer."""
    names = list(ESNET_ARCHS)
    if isinstance(arch, str):
        if arch not in ESNET_ARCHS:
            raise ValueError(f'{_FAMILY}: arch={arch!r} is not a published network; valid names: {names} (PicoDet-S '
                             '/ M / L), or a dict encoding')
        spec: dict[str, Any] = dict(ESNET_ARCHS[arch])
    elif isinstance(arch, Mapping):
        unknown = [k for k in arch if k not in _KEYS]
        if unknown:
            raise ValueError(f'{_FAMILY} arch dict: unknown keys {unknown}; allowed keys: {list(_KEYS)}')
        base = arch.get('base')
        if base is None:
            if 'scale' not in arch:
                raise ValueError(f'{_FAMILY} arch dict needs "scale" (or a "base" in {names} to start from)')
            spec = dict(channel_ratio=None)
        elif base in ESNET_ARCHS:
            spec = dict(ESNET_ARCHS[base])
        else:
            raise ValueError(f'{_FAMILY} arch dict: base={base!r} must be one of {names}')
        spec.update({k: v for k, v in arch.items() if k != 'base'})
    else:
        raise ValueError(f'{_FAMILY}: arch={arch!r} must be one of {names} or a dict encoding')
    scale = _positive_number('scale', spec['scale'])
    repeats = _repeats(spec.get('repeats', ESNET_REPEATS))
    units = sum(repeats)
    ratio_value = spec['channel_ratio'] if spec['channel_ratio'] is not None else (1.0,) * units
    ratios = tuple(_positive_number('channel_ratio', r)
                   for r in _sequence('channel_ratio', ratio_value, f'{units} positive numbers'))
    if len(ratios) != units:
        raise ValueError(f'{_FAMILY} arch["channel_ratio"] has {len(ratios)} entries; it needs one per unit, '
                         f'{units} for repeats={list(repeats)}')
    stages = tuple(make_divisible(c * scale) for c in ESNET_BASE_CHANNELS)
    mids, start = [], 0
    for width, n in zip(stages, repeats):
        mids.append(tuple(make_divisible(int(width * r), divisor=8) for r in ratios[start:start + n]))
        start += n
    return ESNetArch(scale=scale, channel_ratio=ratios, repeats=repeats, stem_channels=ESNET_STEM_CHANNELS,
                     stage_channels=stages, mid_channels=tuple(mids))
