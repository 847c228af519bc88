"""Published encodings of the searched ShuffleNet-Series networks, and the parser that validates user encodings.

Sources (the tables copy their numbers):

* DetNAS (Chen et al., "DetNAS: Backbone Search for Object Detection", NeurIPS 2019, arXiv 1903.10979): the six
  searched backbones of megvii-model/DetNAS and megvii-model/ShuffleNet-Series ``DetNAS/network.py``. The names are
  nominal: COCO-FPN-300M counts 321.2M multiply-adds with its ImageNet classifier.
* ShuffleNetV2+ (megvii-model/ShuffleNet-Series ``ShuffleNetV2+``): Small / Medium / Large widths of one searched
  architecture, h-swish in stages 2-4, squeeze-excitation in stages 3-4.
* OneShot (Guo et al., "Single Path One-Shot Neural Architecture Search with Uniform Sampling", ECCV 2020,
  arXiv 1904.00420): the published subnet with per-block choices and mid-channel scales.

An encoding is ``stem_channels``, four ``stage_channels``, ``last_channels``, four stage ``repeats`` and one block
``choices`` entry per unit (ids 0-3 or the names of
:data:`~shufflenet_det.models.backbones.spos_blocks.BLOCK_CHOICES`); OneShot adds per-unit ``scale_ids`` into
``scale_list`` and ShuffleNetV2+ per-stage activations and SE flags. Every parser raises ``ValueError`` naming the bad
field and what is allowed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

from ..spos_blocks import BLOCK_CHOICES

NUM_STAGES = 4

# ------------------------------------------------------------------ published tables
_DETNAS_300M = dict(stem_channels=16, stage_channels=(64, 160, 320, 640), last_channels=1024, repeats=(4, 4, 8, 4))
_DETNAS_40_BLOCKS = (0, 0, 3, 1, 2, 1, 0, 2, 0, 3, 1, 2, 3, 3, 2, 0, 2, 1, 1, 3,
                     2, 0, 2, 2, 2, 1, 3, 1, 0, 3, 3, 3, 1, 3, 3, 3, 3, 3, 3, 3)

#: The six published DetNAS backbones: channels ``[stem, s1..s4, last]``, repeats and one choice per unit.
DETNAS_ARCHS: dict[str, dict] = {
    'COCO-FPN-300M': dict(_DETNAS_300M, choices=(2, 1, 2, 0, 2, 1, 1, 2, 3, 3, 1, 3, 0, 0, 3, 1, 3, 1, 3, 2)),
    'COCO-RetinaNet-300M': dict(_DETNAS_300M, choices=(2, 3, 1, 1, 3, 2, 1, 3, 3, 1, 1, 1, 3, 3, 2, 0, 3, 3, 3, 3)),
    'VOC-FPN-300M': dict(_DETNAS_300M, choices=(2, 1, 0, 3, 1, 3, 0, 3, 2, 0, 1, 1, 3, 3, 3, 3, 3, 3, 3, 1)),
    'VOC-RetinaNet-300M': dict(_DETNAS_300M, choices=(1, 3, 0, 0, 2, 3, 3, 3, 2, 3, 3, 3, 3, 2, 2, 0, 2, 3, 1, 1)),
    'COCO-FPN-1.3G': dict(stem_channels=48, stage_channels=(96, 240, 480, 960), last_channels=1024,
                          repeats=(8, 8, 16, 8), choices=_DETNAS_40_BLOCKS),
    'COCO-FPN-3.8G': dict(stem_channels=72, stage_channels=(172, 432, 864, 1728), last_channels=1728,
                          repeats=(8, 8, 16, 8), choices=_DETNAS_40_BLOCKS),
}

_V2PLUS_BLOCKS = (0, 0, 3, 1, 1, 1, 0, 0, 2, 0, 2, 1, 1, 0, 2, 0, 2, 1, 3, 2)
_V2PLUS_COMMON = dict(stem_channels=16, last_channels=1280, repeats=(4, 4, 8, 4), choices=_V2PLUS_BLOCKS,
                      stem_act='HSwish', stage_acts=('ReLU', 'HSwish', 'HSwish', 'HSwish'), last_act='HSwish',
                      se_stages=(False, False, True, True))

#: ShuffleNetV2+ widths: one searched architecture, stage channels per model size.
SHUFFLENET_V2_PLUS_ARCHS: dict[str, dict] = {
    'Small': dict(_V2PLUS_COMMON, stage_channels=(36, 104, 208, 416)),
    'Medium': dict(_V2PLUS_COMMON, stage_channels=(48, 128, 256, 512)),
    'Large': dict(_V2PLUS_COMMON, stage_channels=(68, 168, 336, 672)),
}

#: Mid-channel scales of the SPOS supernet; unit ``i`` uses ``mid = int(out / 2 * scale_list[scale_ids[i]])``.
ONESHOT_SCALE_LIST: tuple[float, ...] = (0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6)

#: The published OneShot (SPOS) subnet: DetNAS-300M channels, searched choices and mid-channel scales.
ONESHOT_ARCH: dict = dict(
    _DETNAS_300M,
    choices=_V2PLUS_BLOCKS,
    scale_ids=(6, 5, 3, 5, 2, 6, 3, 4, 2, 5, 7, 5, 4, 6, 7, 4, 4, 5, 4, 3),
    scale_list=ONESHOT_SCALE_LIST,
)

#: Named OneShot encodings (``arch=None`` is ``'Published'``).
ONESHOT_ARCHS: dict[str, dict] = {'Published': ONESHOT_ARCH}

_ACTIVATIONS = ('ReLU', 'HSwish')


@dataclass(frozen=True)
class SearchedArch:
    """A validated encoding: everything the builder needs, one entry per unit where it varies per unit."""

    stem_channels: int
    stage_channels: tuple[int, ...]
    last_channels: int
    repeats: tuple[int, ...]
    choices: tuple[str, ...]
    mid_channels: tuple[int, ...]
    stem_act: str = 'ReLU'
    stage_acts: tuple[str, ...] = ('ReLU',) * NUM_STAGES
    last_act: str = 'ReLU'
    se_stages: tuple[bool, ...] = (False,) * NUM_STAGES

    @property
    def num_blocks(self) -> int:
        return sum(self.repeats)

    def stage_blocks(self, stage: int) -> range:
        """Global unit indices of ``stage`` (0-based)."""
        start = sum(self.repeats[:stage])
        return range(start, start + self.repeats[stage])


# ------------------------------------------------------------------ validation helpers
def _positive_int(field: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f'arch[{field!r}]={value!r} must be a positive int')
    return value


def _int_list(field: str, value: Any, length: Optional[int] = None) -> tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ValueError(f'arch[{field!r}]={value!r} must be a list of positive ints')
    out = tuple(_positive_int(field, v) for v in value)
    if length is not None and len(out) != length:
        raise ValueError(f'arch[{field!r}] has {len(out)} entries, expected {length} (one per stage)')
    return out


def _choices(value: Any, num_blocks: int, repeats: tuple[int, ...]) -> tuple[str, ...]:
    allowed = [f'{i} ({name})' for i, name in enumerate(BLOCK_CHOICES)]
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ValueError(f'arch["choices"]={value!r} must be a list with one block choice per unit; allowed '
                         f'choices: {allowed}')
    if len(value) != num_blocks:
        raise ValueError(f'arch["choices"] has {len(value)} entries but repeats={list(repeats)} make {num_blocks} '
                         f'units: give one block choice per unit')
    names = []
    for i, c in enumerate(value):
        if isinstance(c, int) and not isinstance(c, bool) and 0 <= c < len(BLOCK_CHOICES):
            names.append(BLOCK_CHOICES[c])
        elif isinstance(c, str) and c in BLOCK_CHOICES:
            names.append(c)
        else:
            raise ValueError(f'arch["choices"][{i}]={c!r} is not a block choice; allowed choices: {allowed}')
    return tuple(names)


def _check_channels(stem: int, stages: tuple[int, ...]) -> None:
    prev = stem
    for i, ch in enumerate(stages):
        if ch % 2:
            raise ValueError(f'arch["stage_channels"][{i}]={ch} is odd: every unit splits its channels in two '
                             'halves, so stage channels must be even')
        if ch <= prev:
            raise ValueError(f'arch["stage_channels"][{i}]={ch} must be larger than the input of its stride-2 unit '
                             f'({prev}): the main branch outputs out - in channels')
        prev = ch


def _check_keys(arch: Mapping, required: Sequence[str], optional: Sequence[str], family: str) -> None:
    missing = [k for k in required if k not in arch]
    unknown = [k for k in arch if k not in required and k not in optional]
    if missing or unknown:
        raise ValueError(f'{family} arch dict: missing keys {missing}, unknown keys {unknown}; required keys: '
                         f'{list(required)}, optional keys: {list(optional)}')


def _lookup(arch: Any, table: Mapping[str, dict], family: str) -> dict:
    if isinstance(arch, str):
        if arch not in table:
            raise ValueError(f'{family}: arch={arch!r} is not a published encoding; valid names: {list(table)} '
                             '(or pass a dict encoding)')
        return dict(table[arch])
    if isinstance(arch, Mapping):
        return dict(arch)
    raise ValueError(f'{family}: arch={arch!r} must be one of {list(table)} or a dict encoding')


_BASE_REQUIRED = ('stem_channels', 'stage_channels', 'last_channels', 'repeats', 'choices')


def _parse_common(arch: dict) -> dict:
    stem = _positive_int('stem_channels', arch['stem_channels'])
    stages = _int_list('stage_channels', arch['stage_channels'], NUM_STAGES)
    last = _positive_int('last_channels', arch['last_channels'])
    repeats = _int_list('repeats', arch['repeats'], NUM_STAGES)
    _check_channels(stem, stages)
    choices = _choices(arch['choices'], sum(repeats), repeats)
    return dict(stem_channels=stem, stage_channels=stages, last_channels=last, repeats=repeats, choices=choices)


def _unit_out_channels(stages: tuple[int, ...], repeats: tuple[int, ...]) -> list[int]:
    return [ch for ch, n in zip(stages, repeats) for _ in range(n)]


# ------------------------------------------------------------------ family parsers
def parse_detnas_arch(arch: str | Mapping) -> SearchedArch:
    """A DetNAS name of :data:`DETNAS_ARCHS` or a dict encoding; every unit has ``mid = out / 2``."""
    spec = _lookup(arch, DETNAS_ARCHS, 'DetNAS')
    _check_keys(spec, _BASE_REQUIRED, (), 'DetNAS')
    common = _parse_common(spec)
    mids = tuple(ch // 2 for ch in _unit_out_channels(common['stage_channels'], common['repeats']))
    return SearchedArch(mid_channels=mids, **common)


def parse_v2plus_arch(arch: str | Mapping) -> SearchedArch:
    """A ShuffleNetV2+ size (``'Small'``, ``'Medium'``, ``'Large'``) or a dict encoding.

    Optional dict keys (published values by default): ``stem_act``, ``stage_acts`` (4), ``last_act`` among
    ``'ReLU'``/``'HSwish'``, and ``se_stages`` (4 bools).
    """
    spec = _lookup(arch, SHUFFLENET_V2_PLUS_ARCHS, 'ShuffleNetV2Plus')
    optional = ('stem_act', 'stage_acts', 'last_act', 'se_stages')
    _check_keys(spec, _BASE_REQUIRED, optional, 'ShuffleNetV2Plus')
    common = _parse_common(spec)
    acts = dict(stem_act=spec.get('stem_act', _V2PLUS_COMMON['stem_act']),
                last_act=spec.get('last_act', _V2PLUS_COMMON['last_act']))
    for key, value in acts.items():
        if value not in _ACTIVATIONS:
            raise ValueError(f'arch[{key!r}]={value!r} is not supported; allowed values: {list(_ACTIVATIONS)}')
    stage_acts = tuple(spec.get('stage_acts', _V2PLUS_COMMON['stage_acts']))
    if len(stage_acts) != NUM_STAGES or any(a not in _ACTIVATIONS for a in stage_acts):
        raise ValueError(f'arch["stage_acts"]={list(stage_acts)} must be {NUM_STAGES} values from '
                         f'{list(_ACTIVATIONS)}')
    se_stages = tuple(spec.get('se_stages', _V2PLUS_COMMON['se_stages']))
    if len(se_stages) != NUM_STAGES or any(not isinstance(s, bool) for s in se_stages):
        raise ValueError(f'arch["se_stages"]={list(se_stages)} must be {NUM_STAGES} bools')
    for i, (act, se) in enumerate(zip(stage_acts, se_stages)):
        if se and act == 'ReLU':
            raise ValueError(f'arch: stage {i + 1} has SE with ReLU; the official ShuffleNetV2+ only puts SE in '
                             f'h-swish stages (set stage_acts[{i}]="HSwish" or se_stages[{i}]=False)')
    units = _unit_out_channels(common['stage_channels'], common['repeats'])
    return SearchedArch(mid_channels=tuple(ch // 2 for ch in units), stage_acts=stage_acts, se_stages=se_stages,
                        **acts, **common)


def parse_oneshot_arch(arch: Optional[str | Mapping]) -> SearchedArch:
    """``None`` or ``'Published'`` (the published SPOS subnet, :data:`ONESHOT_ARCH`), or a dict encoding with
    ``scale_ids``.

    ``scale_ids`` (one per unit) index ``scale_list`` (default :data:`ONESHOT_SCALE_LIST`); unit ``i`` has
    ``mid = int(out // 2 * scale_list[scale_ids[i]])``, as in the official implementation.
    """
    if arch is None:
        arch = 'Published'
    if not isinstance(arch, (str, Mapping)):
        raise ValueError(f'OneShot: arch={arch!r} must be None, one of {list(ONESHOT_ARCHS)} (the published subnet) '
                         f'or a dict encoding with keys {list(_BASE_REQUIRED) + ["scale_ids"]}')
    spec = _lookup(arch, ONESHOT_ARCHS, 'OneShot')
    _check_keys(spec, _BASE_REQUIRED + ('scale_ids',), ('scale_list',), 'OneShot')
    common = _parse_common(spec)
    scale_list = spec.get('scale_list', ONESHOT_SCALE_LIST)
    if (isinstance(scale_list, (str, bytes)) or not isinstance(scale_list, Sequence) or not scale_list
            or any(not isinstance(s, (int, float)) or isinstance(s, bool) or s <= 0 for s in scale_list)):
        raise ValueError(f'arch["scale_list"]={scale_list!r} must be a non-empty list of positive numbers')
    scale_ids = spec['scale_ids']
    units = _unit_out_channels(common['stage_channels'], common['repeats'])
    if isinstance(scale_ids, (str, bytes)) or not isinstance(scale_ids, Sequence) or len(scale_ids) != len(units):
        raise ValueError(f'arch["scale_ids"] must be a list with one entry per unit ({len(units)} for repeats='
                         f'{list(common["repeats"])}), got {scale_ids!r}')
    mids = []
    for i, (sid, out) in enumerate(zip(scale_ids, units)):
        if not isinstance(sid, int) or isinstance(sid, bool) or not 0 <= sid < len(scale_list):
            raise ValueError(f'arch["scale_ids"][{i}]={sid!r} is not a valid index into scale_list; allowed values: '
                             f'{list(range(len(scale_list)))} (scale_list={list(scale_list)})')
        mid = int(out // 2 * scale_list[sid])
        if mid < 1:
            raise ValueError(f'arch: unit {i} gets mid channels int({out // 2} * {scale_list[sid]}) = {mid}; it must '
                             'be >= 1')
        mids.append(mid)
    return SearchedArch(mid_channels=tuple(mids), **common)
