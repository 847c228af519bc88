"""The ``nas_search`` section of a search config, validated: the settings of :mod:`.nas_search`.

``nas_search`` keys (defaults in :data:`DEFAULTS`): the evolution settings of
:class:`~shufflenet_det.nas.evolution.EvolutionSettings` (``population_size``, ``top_k``, ``num_mutation``,
``num_crossover``, ``mutation_prob``, ``generations``, ``max_tries``, ``seed``, ``flops_limit``, ``flops_min``);
``flops_mode`` / ``flops_input`` (what is counted, :data:`~shufflenet_det.nas.flops.FLOPS_MODES`);
``calib_dataloader`` and ``num_calib_batches`` (BN recalibration on training images); ``val_dataloader`` and
``val_evaluator`` (the held-out split) and ``metric``; ``references`` (published DetNAS encodings of the same
layout, scored once for comparison); ``subnet_config`` (the ordinary detector config the found backbone goes into,
relative to the search config's folder or the current one; ``None``: the search config itself).
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Optional, Sequence

#: Defaults of the ``nas_search`` keys that are not evolution settings (those default to the SPOS values).
DEFAULTS: dict[str, Any] = dict(flops_mode='classifier', flops_input=224, num_calib_batches=20,
                                metric='coco/bbox_mAP', references=(), subnet_config=None)
REQUIRED = ('calib_dataloader', 'val_dataloader', 'val_evaluator')


class SearchError(ValueError):
    """The search cannot run as asked (config, checkpoint, work dir or resume state); the message says why."""


@dataclass(frozen=True)
class SearchSettings:
    """The ``nas_search`` section of a config, validated (see module docstring)."""

    evolution: Any  # EvolutionSettings
    flops_mode: str
    flops_input: Any
    num_calib_batches: int
    metric: str
    references: tuple
    subnet_config: Optional[str]
    calib_dataloader: dict
    val_dataloader: dict
    val_evaluator: Any

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d['evolution'] = self.evolution.to_dict()
        return d


def to_plain(obj: Any) -> Any:
    """Config values as JSON-ready plain values (tuples -> lists, ConfigDicts -> dicts)."""
    if isinstance(obj, Mapping):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    return obj


def resolve_subnet_config(value: Optional[str], config_path: Optional[str]) -> Optional[str]:
    """``subnet_config`` relative to the search config's folder (as ``_base_``), else to the current folder; package
    names (``shufflenet_det::...``) as :func:`shufflenet_det.utils.build.resolve_config_path`."""
    from ..utils.build import resolve_config_path
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise SearchError(f'nas_search.subnet_config={value!r} must be None or a config path')
    if '::' in value:
        resolved = resolve_config_path(value)
        if not os.path.isfile(resolved):
            raise SearchError(f'nas_search.subnet_config {value!r} does not exist')
        return value
    candidates = []
    if config_path and not os.path.isabs(value):
        candidates.append(os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(config_path)), value)))
    candidates.append(value)
    for candidate in candidates:
        if os.path.isfile(candidate):
            return candidate
    raise SearchError(f'nas_search.subnet_config {value!r} does not exist (looked for {candidates})')


def parse_settings(cfg: Any, config_path: Optional[str] = None) -> SearchSettings:
    """The validated ``nas_search`` section of ``cfg``; :class:`SearchError` naming the bad key otherwise."""
    from ..nas.evaluate import check_metric, evaluator_metric_keys
    from ..nas.evolution import EvolutionSettings
    from ..nas.flops import FLOPS_MODES

    section = cfg.get('nas_search')
    if not isinstance(section, Mapping):
        raise SearchError(f'config {config_path or ""!r} has no nas_search section (a dict of search settings: see '
                          'configs/nas/ and shufflenet_det/apps/nas_search.py)')
    section = copy.deepcopy(section.to_dict() if hasattr(section, 'to_dict') else dict(section))  # tuples kept
    missing = [k for k in REQUIRED if not section.get(k)]
    if missing:
        raise SearchError(f'nas_search lacks {missing}: the search needs training images for the BN recalibration '
                          '(calib_dataloader) and a held-out split with its evaluator (val_dataloader, val_evaluator)')
    evo_keys = set(EvolutionSettings.__dataclass_fields__)
    other = set(DEFAULTS) | set(REQUIRED)
    unknown = sorted(set(section) - evo_keys - other)
    if unknown:
        raise SearchError(f'nas_search: unknown keys {unknown}; allowed: {sorted(evo_keys | other)}')
    try:
        evolution = EvolutionSettings.from_dict({k: v for k, v in section.items() if k in evo_keys}, 'nas_search')
    except ValueError as exc:
        raise SearchError(f'nas_search.{exc}') from None
    values = {**DEFAULTS, **{k: v for k, v in section.items() if k in other}}
    if values['flops_mode'] not in FLOPS_MODES:
        raise SearchError(f"nas_search.flops_mode={values['flops_mode']!r} is not supported; allowed values: "
                          f'{list(FLOPS_MODES)}')
    n = values['num_calib_batches']
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise SearchError(f'nas_search.num_calib_batches={n!r} must be an int >= 1')
    if not isinstance(values['metric'], str) or not values['metric']:
        raise SearchError(f"nas_search.metric={values['metric']!r} must be a metric name, e.g. 'coco/bbox_mAP'")
    known = evaluator_metric_keys(values['val_evaluator'])
    if known is not None:  # other evaluators: checked on the first evaluation (PathScorer)
        try:
            check_metric(values['metric'], known)
        except ValueError as exc:
            raise SearchError(str(exc)) from None
    refs = values['references']
    if isinstance(refs, str) or not isinstance(refs, (list, tuple)):
        raise SearchError(f'nas_search.references={refs!r} must be a list of published DetNAS names')
    for name in ('calib_dataloader', 'val_dataloader'):
        loader = values[name]
        if not isinstance(loader, Mapping) or not isinstance(loader.get('dataset'), Mapping):
            raise SearchError(f'nas_search.{name} must be a dataloader dict with a dataset')
    return SearchSettings(evolution=evolution, flops_mode=values['flops_mode'], flops_input=values['flops_input'],
                          num_calib_batches=n, metric=values['metric'], references=tuple(refs),
                          subnet_config=resolve_subnet_config(values['subnet_config'], config_path),
                          calib_dataloader=dict(values['calib_dataloader']),
                          val_dataloader=dict(values['val_dataloader']), val_evaluator=values['val_evaluator'])


def reference_paths(space: Any, names: Sequence[str]) -> list[tuple[str, tuple[int, ...]]]:
    """``(name, path)`` of published DetNAS encodings of the space's layout; SearchError for another layout."""
    from ..models.backbones.archs.searched import DETNAS_ARCHS
    out = []
    for name in names:
        if name not in DETNAS_ARCHS:
            raise SearchError(f'nas_search.references: {name!r} is not a published DetNAS encoding; allowed: '
                              f'{list(DETNAS_ARCHS)}')
        arch = DETNAS_ARCHS[name]
        layout = {k: list(v) if isinstance(v, tuple) else v for k, v in arch.items() if k != 'choices'}
        if layout != space.layout():
            raise SearchError(f'nas_search.references: {name!r} has the layout {layout}, not the search space\'s '
                              f'{space.layout()}')
        out.append((name, space.check_path(arch['choices'])))
    return out


def check_search_data(settings: SearchSettings) -> None:
    """The calibration and held-out data exist and are readable (before any model is built)."""
    from ..datasets import DatasetCheckError, check_config_data
    probe = dict(train_dataloader=settings.calib_dataloader, val_dataloader=settings.val_dataloader,
                 val_evaluator=settings.val_evaluator)
    try:
        check_config_data(probe, ('train', 'val'))
    except DatasetCheckError as exc:
        raise SearchError(f'search data (nas_search.calib_dataloader / val_dataloader / val_evaluator): {exc}\n'
                          'The held-out split is made from the training annotations with '
                          'tools/nas/split_coco.py') from None


def digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(to_plain(obj), sort_keys=True, default=str).encode()).hexdigest()[:16]


def fingerprint(cfg: Any, settings: SearchSettings, checkpoint_sha: str) -> dict[str, str]:
    """What a resumed search must share with the search it continues (``generations`` may grow)."""
    d = settings.to_dict()
    d['evolution'] = {k: v for k, v in d['evolution'].items() if k != 'generations'}
    return dict(model=digest(cfg.model), settings=digest(d), checkpoint=checkpoint_sha)
