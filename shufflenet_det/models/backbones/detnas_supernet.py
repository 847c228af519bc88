"""The DetNAS supernet: every block choice of every unit held, one path active at a time.

DetNAS (Chen et al., "DetNAS: Backbone Search for Object Detection", NeurIPS 2019, arXiv 1903.10979) searches a
detection backbone with the one-shot method of Single Path One-Shot NAS (Guo et al., arXiv 1904.00420): a supernet
holds, for each unit of a fixed channel/repeat layout, the four block choices (shuffle 3x3 / 5x5 / 7x7, xception 3x3);
training samples one *path* (one choice per unit) uniformly at random per iteration and updates only its weights;
the search then scores paths with the inherited weights.

A path is the ``choices`` list of the :class:`~shufflenet_det.models.backbones.detnas.DetNAS` encoding. Each unit
(:class:`MixedShuffleUnit`) holds one
:class:`~shufflenet_det.models.backbones.spos_blocks.SearchedShuffleBlock` per choice, built with exactly the
arguments the standalone DetNAS builds for that choice, under ``candidates.<choice name>``; the stem and the last
conv are DetNAS's. So the weights of a path are the supernet's keys with the ``candidates.<choice>.`` level removed
(:meth:`DetNASSupernet.subnet_state_dict`), and ``DetNAS(arch=supernet.subnet_arch(path))`` loaded with them computes
the supernet's function on that path exactly::

    supernet = MODELS.build(dict(type='DetNASSupernet', space='300M', out_indices=(1, 2, 3)))
    path = supernet.sample_path(np.random.default_rng(0))          # also set as the active path
    detnas = MODELS.build(dict(type='DetNAS', arch=supernet.subnet_arch(), out_indices=(1, 2, 3)))
    detnas.load_state_dict(supernet.subnet_state_dict(), strict=True)   # same outputs as supernet

Search spaces (:data:`SEARCH_SPACES`): ``'300M'`` (default) and ``'1.3G'`` take the channel/repeat layout of the
published DetNAS COCO-FPN-300M and COCO-FPN-1.3G backbones; a dict with ``stem_channels``, ``stage_channels``,
``last_channels`` and ``repeats`` gives any other layout (e.g. a tiny one for tests).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import torch
from mmdet.registry import MODELS
from torch import nn

from ..layers import conv_norm_act
from .archs.searched import DETNAS_ARCHS, NUM_STAGES, parse_detnas_arch
from .base import ShuffleBackboneBase
from .searched_base import OUTPUT_STAGE_MODULES, OUTPUT_STRIDES, STAGE_NAMES
from .spos_blocks import BLOCK_CHOICES, SearchedShuffleBlock

#: Fields of a search-space layout (a DetNAS encoding without ``choices``).
LAYOUT_KEYS: tuple[str, ...] = ('stem_channels', 'stage_channels', 'last_channels', 'repeats')

#: Named search spaces: the channel/repeat layout of a published DetNAS backbone.
SEARCH_SPACES: dict[str, str] = {'300M': 'COCO-FPN-300M', '1.3G': 'COCO-FPN-1.3G'}

_CHOICE_KEY = re.compile(r'^(?P<unit>stage(?P<stage>\d+)\.(?P<index>\d+))\.candidates\.(?P<choice>[a-z0-9_]+)\.'
                         r'(?P<rest>.+)$')


@dataclass(frozen=True)
class SearchSpace:
    """A DetNAS search space: a fixed channel/repeat layout and one of :data:`BLOCK_CHOICES` per unit.

    Paths are tuples of choice ids (0-3, the DetNAS ``choices`` ids), one per unit in network order.
    """

    stem_channels: int
    stage_channels: tuple[int, ...]
    last_channels: int
    repeats: tuple[int, ...]

    @classmethod
    def build(cls, space: str | Mapping[str, Any] | SearchSpace) -> SearchSpace:
        """A space from a name of :data:`SEARCH_SPACES`, a layout dict (keys :data:`LAYOUT_KEYS`) or a space.

        Raises ValueError naming the bad name or field (the layout is validated by the DetNAS parser).
        """
        if isinstance(space, SearchSpace):
            return space
        if isinstance(space, str):
            if space not in SEARCH_SPACES:
                raise ValueError(f'space={space!r} is not a named DetNAS search space; allowed names: '
                                 f'{list(SEARCH_SPACES)} (or a dict with keys {list(LAYOUT_KEYS)})')
            layout = {k: DETNAS_ARCHS[SEARCH_SPACES[space]][k] for k in LAYOUT_KEYS}
        elif isinstance(space, Mapping):
            missing = [k for k in LAYOUT_KEYS if k not in space]
            unknown = [k for k in space if k not in LAYOUT_KEYS]
            if missing or unknown:
                raise ValueError(f'space dict: missing keys {missing}, unknown keys {unknown}; a search space is '
                                 f'{list(LAYOUT_KEYS)} (the DetNAS encoding without choices)')
            layout = dict(space)
        else:
            raise ValueError(f'space={space!r} must be one of {list(SEARCH_SPACES)} or a dict with keys '
                             f'{list(LAYOUT_KEYS)}')
        repeats = layout['repeats']
        num_blocks = sum(repeats) if isinstance(repeats, Sequence) and all(
            isinstance(r, int) for r in repeats) else 0
        spec = parse_detnas_arch(dict(layout, choices=[0] * num_blocks))  # validates every field
        return cls(spec.stem_channels, tuple(spec.stage_channels), spec.last_channels, tuple(spec.repeats))

    @property
    def num_blocks(self) -> int:
        """Units (searched positions) of the space."""
        return sum(self.repeats)

    @property
    def num_choices(self) -> int:
        """Block choices per unit (4)."""
        return len(BLOCK_CHOICES)

    @property
    def size(self) -> int:
        """Number of paths: ``num_choices ** num_blocks``."""
        return self.num_choices ** self.num_blocks

    def layout(self) -> dict[str, Any]:
        """The layout as JSON-ready values (what :meth:`build` accepts)."""
        return dict(stem_channels=self.stem_channels, stage_channels=list(self.stage_channels),
                    last_channels=self.last_channels, repeats=list(self.repeats))

    def check_path(self, path: Any, name: str = 'path') -> tuple[int, ...]:
        """``path`` as a tuple of choice ids; ValueError naming ``name`` when it is not one choice per unit."""
        allowed = [f'{i} ({c})' for i, c in enumerate(BLOCK_CHOICES)]
        if isinstance(path, (str, bytes)) or not isinstance(path, Sequence):
            raise ValueError(f'{name}={path!r} must be a list with one block choice per unit ({self.num_blocks} '
                             f'units); allowed choices: {allowed}')
        if len(path) != self.num_blocks:
            raise ValueError(f'{name} has {len(path)} entries but the search space has {self.num_blocks} units '
                             f'(repeats={list(self.repeats)}): give one block choice per unit')
        ids = []
        for i, c in enumerate(path):
            if isinstance(c, (int, np.integer)) and not isinstance(c, bool) and 0 <= int(c) < self.num_choices:
                ids.append(int(c))
            elif isinstance(c, str) and c in BLOCK_CHOICES:
                ids.append(BLOCK_CHOICES.index(c))
            else:
                raise ValueError(f'{name}[{i}]={c!r} is not a block choice; allowed choices: {allowed}')
        return tuple(ids)

    def sample(self, rng: np.random.Generator) -> tuple[int, ...]:
        """A path drawn uniformly: every unit's choice independently and uniformly (SPOS's uniform sampling)."""
        return tuple(int(c) for c in rng.integers(0, self.num_choices, size=self.num_blocks))

    def arch(self, path: Sequence[int | str]) -> dict[str, Any]:
        """The DetNAS ``arch`` dict of ``path`` (``dict(type='DetNAS', arch=...)`` builds the standalone network)."""
        return dict(self.layout(), choices=list(self.check_path(path)))

    def unit_names(self) -> list[str]:
        """Module names of the units in network order (``'stage1.0'``, ..., as in DetNAS and the supernet)."""
        return [f'{STAGE_NAMES[s]}.{j}' for s in range(NUM_STAGES) for j in range(self.repeats[s])]


class MixedShuffleUnit(nn.Module):
    """One searched position of the supernet: a :class:`SearchedShuffleBlock` per block choice, one of them active.

    ``candidates`` is an ``nn.ModuleDict`` keyed by the names of :data:`BLOCK_CHOICES`; only the active choice runs,
    so only its parameters get gradients (the others are unused in that iteration).
    """

    def __init__(self, candidates: Mapping[str, nn.Module], active: int = 0) -> None:
        super().__init__()
        if list(candidates) != list(BLOCK_CHOICES):
            raise ValueError(f'candidates must be keyed by {list(BLOCK_CHOICES)} in that order, got {list(candidates)}')
        self.candidates = nn.ModuleDict(candidates)
        self.active = int(active)

    @property
    def active_choice(self) -> str:
        """The name of the active choice."""
        return BLOCK_CHOICES[self.active]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.candidates[BLOCK_CHOICES[self.active]](x)

    def extra_repr(self) -> str:
        return f'active={self.active_choice!r}'


@MODELS.register_module()
class DetNASSupernet(ShuffleBackboneBase):
    """DetNAS supernet backbone (see module docstring): DetNAS's layout with all four choices in every unit.

    Args:
        space: a search space name (``'300M'``, the default, or ``'1.3G'``) or a layout dict (see module docstring).
        path: the initially active path (one choice per unit, ids 0-3 or names); ``None``: all ``shufflenet_3x3``.
            Training changes it every iteration (:class:`~shufflenet_det.engine.nas_hooks.UniformPathSamplerHook`).
        out_indices: outputs to return: 0-3 the four stages (strides 4, 8, 16, 32), 4 the last 1x1 conv.
        act_cfg: ``None`` (default) keeps DetNAS's ReLU; a config replaces every activation.
        **kwargs: the other contract arguments of :class:`ShuffleBackboneBase` (``frozen_stages``, ``conv_cfg``,
            ``norm_cfg`` - e.g. ``dict(type='SyncBN')``, the DetNAS recipe on GPUs -, ``norm_eval``, ``with_cp``,
            ``init_cfg``).
    """

    def __init__(self,
                 space: str | Mapping[str, Any] = '300M',
                 path: Optional[Sequence[int | str]] = None,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 act_cfg: Optional[dict] = None,
                 **kwargs: Any) -> None:
        self.space = SearchSpace.build(space)
        initial = self.space.check_path([0] * self.space.num_blocks if path is None else path)
        super().__init__(out_indices=out_indices, act_cfg=act_cfg, **kwargs)
        spec = parse_detnas_arch(self.space.arch(initial))  # the standalone DetNAS's own parse: same arguments
        cfg: dict[str, Any] = dict(conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg)

        def act(published: str) -> dict:
            return dict(self.act_cfg) if self.act_cfg is not None else dict(type=published)

        def build_units(stage: int, in_channels: int, out_channels: int) -> list[MixedShuffleUnit]:
            units = []
            for j, unit in enumerate(spec.stage_blocks(stage)):
                candidates = {choice: SearchedShuffleBlock(
                    in_channels if j == 0 else out_channels, out_channels, stride=2 if j == 0 else 1, choice=choice,
                    mid_channels=spec.mid_channels[unit], act_cfg=act(spec.stage_acts[stage]),
                    with_se=spec.se_stages[stage], **cfg) for choice in BLOCK_CHOICES}
                units.append(MixedShuffleUnit(candidates))
            return units

        self._add_stem(spec.stem_channels, act(spec.stem_act), with_maxpool=False)
        last = self._add_stages(STAGE_NAMES, spec.stem_channels, spec.stage_channels, build_units)
        self.conv_last = nn.Sequential(*conv_norm_act(last, spec.last_channels, 1, act_cfg=act(spec.last_act),
                                                      **cfg))
        self._set_outputs(OUTPUT_STAGE_MODULES, tuple(spec.stage_channels) + (spec.last_channels,), OUTPUT_STRIDES)
        self.set_path(initial)

    # ------------------------------------------------------------------ paths
    def units(self) -> list[MixedShuffleUnit]:
        """The mixed units in network order."""
        return [unit for name in STAGE_NAMES for unit in getattr(self, name)]

    @property
    def path(self) -> tuple[int, ...]:
        """The active path (choice ids, one per unit)."""
        return tuple(unit.active for unit in self.units())

    def set_path(self, path: Sequence[int | str]) -> tuple[int, ...]:
        """Activate ``path`` (ids 0-3 or choice names, one per unit); return it as ids."""
        ids = self.space.check_path(path)
        for unit, choice in zip(self.units(), ids):
            unit.active = choice
        return ids

    def sample_path(self, rng: Optional[np.random.Generator] = None) -> tuple[int, ...]:
        """Draw a path uniformly (:meth:`SearchSpace.sample`), activate and return it. ``rng``: numpy generator
        (``None``: a fresh unseeded one)."""
        return self.set_path(self.space.sample(rng if rng is not None else np.random.default_rng()))

    # ------------------------------------------------------------------ the standalone subnet
    def subnet_arch(self, path: Optional[Sequence[int | str]] = None) -> dict[str, Any]:
        """The DetNAS ``arch`` dict of ``path`` (default: the active path)."""
        return self.space.arch(self.path if path is None else path)

    def subnet_state_dict(self, state: Optional[Mapping[str, torch.Tensor]] = None,
                          path: Optional[Sequence[int | str]] = None,
                          prefix: str = '') -> dict[str, torch.Tensor]:
        """The weights of ``path`` (default: the active one) in the standalone DetNAS layout.

        ``state``: a state dict holding this supernet's keys under ``prefix`` (default: this module's own state,
        ``prefix=''``); e.g. a detector's with ``prefix='backbone.'``. Keys outside ``prefix`` are kept as they are
        (the neck and head of a detector); under it, each unit's ``candidates.<choice>.`` level is removed for the
        path's choice and the other choices are dropped. ValueError when ``state`` lacks a unit's candidates.
        """
        ids = self.space.check_path(self.path if path is None else path)
        chosen = dict(zip(self.space.unit_names(), (BLOCK_CHOICES[i] for i in ids)))
        if state is None:
            state, prefix = self.state_dict(), ''
        out: dict[str, torch.Tensor] = {}
        found = set()
        for key, value in state.items():
            if not key.startswith(prefix):
                out[key] = value
                continue
            match = _CHOICE_KEY.match(key[len(prefix):])
            if match is None:
                out[key] = value
                continue
            unit = match['unit']
            if unit not in chosen:
                raise ValueError(f'state key {key!r} names unit {unit!r}, which the search space '
                                 f'(repeats={list(self.space.repeats)}) does not have')
            if match['choice'] == chosen[unit]:
                out[f'{prefix}{unit}.{match["rest"]}'] = value
                found.add(unit)
        missing = [u for u in chosen if u not in found]
        if missing:
            raise ValueError(f'the state dict holds no {prefix}<unit>.candidates.<choice> weights for units {missing} '
                             '(is it a checkpoint of this supernet?)')
        return out
