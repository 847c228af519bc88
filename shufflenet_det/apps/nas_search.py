"""The DetNAS evolutionary search over a trained supernet detector: the body of ``tools/nas/search.py``.

Input: a detector config whose backbone is a ``DetNASSupernet`` and which holds a ``nas_search`` section, and the
supernet checkpoint its training (``tools/train.py`` with ``UniformPathSamplerHook``) wrote. Each candidate path is
scored by COCO mAP on a held-out split after recalibrating the BN statistics on training images
(:mod:`shufflenet_det.nas.evaluate`); paths outside the multiply-add budget are never scored
(:mod:`shufflenet_det.nas.flops`); the population evolves as in SPOS / DetNAS (:mod:`shufflenet_det.nas.evolution`).

``nas_search`` keys (defaults in :data:`DEFAULTS`): the evolution settings of
:class:`~shufflenet_det.nas.evolution.EvolutionSettings` (``population_size``, ``top_k``, ``num_mutation``,
``num_crossover``, ``mutation_prob``, ``generations``, ``max_tries``, ``seed``, ``flops_limit``, ``flops_min``);
``flops_mode`` / ``flops_input`` (what is counted, :data:`~shufflenet_det.nas.flops.FLOPS_MODES`);
``calib_dataloader`` and ``num_calib_batches`` (BN recalibration on training images); ``val_dataloader`` and
``val_evaluator`` (the held-out split) and ``metric``; ``references`` (published DetNAS encodings of the same
layout, scored once for comparison); ``subnet_config`` (the ordinary detector config the found backbone goes into,
relative to the search config's folder or the current one; ``None``: the search config itself).

Outputs in the work dir, each written atomically:

* ``search_state.json`` - everything needed to continue (written after every generation; ``--resume``);
* ``search_log.json`` - every scored candidate (encoding, multiply-adds, metrics, generation, origin, seconds), the
  per-generation history and the best path, written with the state;
* ``search.png`` - mAP against multiply-adds over the generations;
* ``best_config.py`` + ``best_subnet.pth`` - the best encoding as a ready ``DetNAS`` detector config and its weights
  inherited from the supernet (BN recalibrated for it), which load strictly into that config's model.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

from ..utils.io import atomic_outputs, file_sha256

STATE_FILE = 'search_state.json'
LOG_FILE = 'search_log.json'
PLOT_FILE = 'search.png'
BEST_CONFIG = 'best_config.py'
BEST_CHECKPOINT = 'best_subnet.pth'
STATE_VERSION = 1

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


def _to_plain(obj: Any) -> Any:
    """Config values as JSON-ready plain values (tuples -> lists, ConfigDicts -> dicts)."""
    if isinstance(obj, Mapping):
        return {str(k): _to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_plain(v) for v in obj]
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


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(_to_plain(obj), sort_keys=True, default=str).encode()).hexdigest()[:16]


def fingerprint(cfg: Any, settings: SearchSettings, checkpoint_sha: str) -> dict[str, str]:
    """What a resumed search must share with the search it continues (``generations`` may grow)."""
    d = settings.to_dict()
    d['evolution'] = {k: v for k, v in d['evolution'].items() if k != 'generations'}
    return dict(model=_digest(cfg.model), settings=_digest(d), checkpoint=checkpoint_sha)


def default_work_dir(config: str) -> str:
    return os.path.join('work_dirs', 'nas_search', os.path.splitext(os.path.basename(config))[0])


def build_scorer(cfg: Any, settings: SearchSettings, state_dict: Mapping[str, Any],
                 source: str = 'supernet checkpoint') -> Any:
    """The :class:`~shufflenet_det.nas.evaluate.PathScorer` of a search: the supernet detector of ``cfg`` with
    ``state_dict`` (every key and shape must fit: :class:`~shufflenet_det.utils.checkpoint.CheckpointError` naming
    ``source`` otherwise; SyncBN reverted to BN), the calibration and held-out loaders and the evaluator of
    ``settings``."""
    from mmdet.registry import MODELS
    from mmengine.evaluator import Evaluator
    from mmengine.model import revert_sync_batchnorm
    from mmengine.runner import Runner

    from ..nas.evaluate import PathScorer, quiet
    from ..utils.checkpoint import check_state_dict_fits

    model_cfg = copy.deepcopy(cfg.model)
    model_cfg['backbone']['init_cfg'] = None
    model = revert_sync_batchnorm(MODELS.build(model_cfg))
    check_state_dict_fits(model, state_dict, source)
    model.load_state_dict(dict(state_dict), strict=True)
    model.eval()
    with quiet():  # pycocotools prints while it indexes the annotation files
        calib = Runner.build_dataloader(copy.deepcopy(settings.calib_dataloader), seed=settings.evolution.seed)
        val = Runner.build_dataloader(copy.deepcopy(settings.val_dataloader), seed=settings.evolution.seed)
        evaluator = Evaluator(copy.deepcopy(settings.val_evaluator))
    evaluator.dataset_meta = val.dataset.metainfo
    return PathScorer(model, calib, val, evaluator, settings.num_calib_batches, settings.metric)


def check_budget(space: Any, counter: Callable[[tuple[int, ...]], int], flops_limit: Optional[float]) -> None:
    """SearchError naming both numbers unless the cheapest path of ``space`` fits ``flops_limit``: otherwise every
    generation would breed no candidate and the search would end with nothing scored.

    The uniform paths (one choice in every unit) are counted first; only when none fits is the cheapest path
    searched for exactly: a path's multiply-adds are the sum of its units' (the channels of every unit are fixed), so
    trying every other choice one unit at a time, keeping any that costs less, ends at the cheapest path.
    """
    from ..nas.evolution import path_key
    if flops_limit is None:
        return
    costs = {c: counter((c,) * space.num_blocks) for c in range(space.num_choices)}
    choice = min(costs, key=costs.__getitem__)
    path, smallest = [choice] * space.num_blocks, costs[choice]
    if smallest <= flops_limit:
        return
    for unit in range(space.num_blocks):
        for c in range(space.num_choices):
            trial = path[:unit] + [c] + path[unit + 1:]
            flops = counter(tuple(trial)) if c != path[unit] else smallest
            if flops < smallest:
                path, smallest = trial, flops
    if smallest > flops_limit:
        raise SearchError(f'nas_search.flops_limit={flops_limit:g} is below the multiply-adds of the smallest path of '
                          f'the search space, {smallest} ({smallest / 1e6:.2f}M, encoding {path_key(path)}): no '
                          f'candidate can fit; raise flops_limit to at least {smallest} (or remove it)')


def _progress(bar: Any) -> Optional[Callable[..., None]]:
    """The ``on_candidate`` callback advancing ``bar`` (None without a bar)."""
    if bar is None:
        return None
    return lambda *_: bar.update()


def _summary_line(state: Any, total_generations: int, elapsed: float) -> str:
    h = state.history[-1]
    best = state.candidates[h['best_key']] if h['best_key'] else None
    text = (f"[nas search] generation {h['generation'] + 1}/{total_generations}: {h['population']} candidates "
            f"({', '.join(f'{v} {k}' for k, v in h['origins'].items())})")
    if h['max_score'] is not None:
        text += f", best of generation {h['max_score']:.3f}"
    if best is not None:
        text += f"; best so far {best['score']:.3f} at {best['flops'] / 1e6:.1f}M multiply-adds ({h['best_key']})"
    return text + f'; {elapsed:.0f} s in all'


def run_search(config: str,
               checkpoint: str,
               work_dir: Optional[str] = None,
               resume: bool = False,
               cfg_options: Optional[Mapping[str, Any]] = None,
               log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or, with ``resume``, continue) the search of ``config`` over the supernet weights ``checkpoint``; return
    the summary (also in ``search_log.json``). Every problem found before the search starts raises
    :class:`SearchError` (or :class:`~shufflenet_det.utils.checkpoint.CheckpointError`) naming it."""
    from mmengine.utils import ProgressBar

    from ..models.backbones.detnas_supernet import SearchSpace
    from ..nas.evolution import EvolutionarySearch, SearchState, path_key
    from ..nas.flops import PathFlops
    from ..utils.build import ConfigError, load_config
    from ..utils.checkpoint import read_state_dict

    start = time.perf_counter()
    try:
        cfg = load_config(config, cfg_options)
    except ConfigError as exc:
        raise SearchError(str(exc)) from None
    settings = parse_settings(cfg, config)
    backbone = cfg.get('model', {}).get('backbone', {})
    if not isinstance(backbone, Mapping) or backbone.get('type') != 'DetNASSupernet':
        raise SearchError(f"config {config!r}: model.backbone.type must be 'DetNASSupernet' (the supernet the search "
                          f"runs on), got {backbone.get('type') if isinstance(backbone, Mapping) else backbone!r}")
    try:
        space = SearchSpace.build(backbone.get('space', '300M'))
    except ValueError as exc:
        raise SearchError(f'model.backbone: {exc}') from None
    references = reference_paths(space, settings.references)

    work = Path(work_dir or default_work_dir(config))
    state_file, log_file, plot_file = work / STATE_FILE, work / LOG_FILE, work / PLOT_FILE
    if state_file.exists() and not resume:
        raise SearchError(f'{str(work)!r} already holds a search ({STATE_FILE}): pass --resume to continue it, or '
                          'choose another --work-dir')
    if resume and not state_file.is_file():
        raise SearchError(f'--resume: {str(state_file)!r} does not exist (nothing to continue; run without --resume)')
    if not os.path.isfile(checkpoint):
        raise SearchError(f'supernet checkpoint {checkpoint!r} does not exist (train the supernet first: '
                          f'python tools/train.py {config})')
    check_search_data(settings)

    print_fp = fingerprint(cfg, settings, file_sha256(checkpoint))

    saved: dict[str, Any] = {}  # a corrupt or foreign resume state fails here, before the supernet is built
    if resume:
        try:
            saved = json.loads(state_file.read_text(encoding='utf-8'))
            if saved.get('version') != STATE_VERSION:
                raise ValueError(f"version {saved.get('version')!r} (this tool writes {STATE_VERSION})")
            state = SearchState.from_dict(saved['search']).check(space)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise SearchError(f'--resume: {str(state_file)!r} is not a readable search state: {exc}') from None
        differ = [k for k, v in print_fp.items() if saved.get('fingerprint', {}).get(k) != v]
        if differ:
            raise SearchError(f'--resume: the {", ".join(differ)} differ from the search in {str(work)!r} '
                              '(only nas_search.generations may change when continuing); use the same config and '
                              'supernet checkpoint, or start a new search in another --work-dir')

    counter = PathFlops(cfg.model, settings.flops_mode, settings.flops_input)
    check_budget(space, counter, settings.evolution.flops_limit)
    state_dict = read_state_dict(checkpoint, what='supernet checkpoint')
    scorer = build_scorer(cfg, settings, state_dict, f'supernet checkpoint {checkpoint!r}')
    import torch
    log(f'[nas search] space {space.layout()} ({space.num_blocks} units, {space.size:.3g} paths); supernet '
        f'{checkpoint}; work dir {work}; torch threads {torch.get_num_threads()}')
    search = EvolutionarySearch(space, settings.evolution, counter, scorer)
    evo = settings.evolution
    elapsed_before = float(saved.get('elapsed_seconds', 0.0)) if resume else 0.0

    def elapsed() -> float:
        return elapsed_before + time.perf_counter() - start

    if resume:
        refs = saved.get('references', [])
        log(f'[nas search] resuming after generation {state.generation} of {evo.generations} '
            f'({len(state.candidates)} candidates scored)')
    else:
        refs = []
        for name, path in references:
            result = scorer(path)
            refs.append(dict(name=name, key=path_key(path), path=list(path), flops=counter(path),
                             score=result['score'], metrics=result['metrics']))
            log(f"[nas search] reference {name}: {result['score']:.3f} at {refs[-1]['flops'] / 1e6:.1f}M "
                'multiply-adds (supernet weights, BN recalibrated)')
        state = search.initial_state()

    def payload() -> tuple[dict, dict]:
        best_key = state.top_k[0] if state.top_k else None
        best = dict(key=best_key, arch=space.arch(state.candidates[best_key]['path']),
                    **state.candidates[best_key]) if best_key else None
        state_doc = dict(version=STATE_VERSION, fingerprint=print_fp, search=state.to_dict(), references=refs,
                         elapsed_seconds=round(elapsed(), 1))
        log_doc = dict(
            config=str(config), checkpoint=str(checkpoint), space=space.layout(),
            settings=_to_plain(settings.to_dict()),
            generations_done=state.generation, elapsed_seconds=round(elapsed(), 1),
            candidates=[dict(key=k, **rec) for k, rec in state.candidates.items()],
            history=state.history, references=refs, top_k=list(state.top_k), best=best)
        return state_doc, log_doc

    def save() -> dict:
        state_doc, log_doc = payload()
        with atomic_outputs([state_file, log_file], 'search state') as (tmp_state, tmp_log):
            tmp_state.write_text(json.dumps(state_doc, indent=1) + '\n', encoding='utf-8')
            tmp_log.write_text(json.dumps(log_doc, indent=1) + '\n', encoding='utf-8')
        return log_doc

    def plot(log_doc: dict) -> None:
        from ..nas.plot import plot_search
        plot_search(log_doc['candidates'], plot_file, evo.generations, evo.flops_limit, evo.flops_min,
                    best=log_doc['best'], references=refs,
                    title=f'DetNAS evolutionary search ({len(log_doc["candidates"])} candidates, '
                          f'{state.generation} generations)',
                    score_name=f'{settings.metric} (held-out split)')

    if not resume:
        save()  # generation 0 bred: a kill from here on resumes without counting its multiply-adds again
    while state.generation < evo.generations:
        bar = ProgressBar(len(state.population), file=sys.stdout) if state.population else None
        search.step(state, on_candidate=_progress(bar))
        if bar is not None:
            sys.stdout.write('\n')
        log_doc = save()
        plot(log_doc)
        log(_summary_line(state, evo.generations, elapsed()))
    if not state.top_k:
        raise SearchError('no path satisfied the multiply-add budget (nas_search.flops_limit / flops_min): nothing '
                          'was scored')
    log_doc = save()
    plot(log_doc)
    result = export_best(cfg, settings, state, space, scorer, work, config, checkpoint, log_doc)
    log(f"[nas search] best {result['key']}: {settings.metric} {result['score']:.3f} at "
        f"{result['flops'] / 1e6:.1f}M multiply-adds -> {result['config']} + {result['checkpoint']} "
        f'({elapsed():.0f} s in all)')
    return dict(log_doc, best=result, work_dir=str(work))


def export_best(cfg: Any, settings: SearchSettings, state: Any, space: Any, scorer: Any, work: Path, config: str,
                checkpoint: str, log_doc: Mapping[str, Any]) -> dict[str, Any]:
    """Write ``best_config.py`` and ``best_subnet.pth`` for the best path (BN recalibrated as when it was scored)."""
    from ..nas.evaluate import supernets_of
    from ..nas.export import subnet_detector_config, write_subnet

    key = state.top_k[0]
    record = state.candidates[key]
    arch = space.arch(record['path'])
    scorer.prepare(record['path'])
    supernet = supernets_of(scorer.model)[0]
    weights = supernet.subnet_state_dict(scorer.model.state_dict(), record['path'], prefix='backbone.')
    try:
        out_cfg = subnet_detector_config(cfg, arch, settings.subnet_config)
    except ValueError as exc:
        raise SearchError(f'nas_search.subnet_config: {exc}') from None
    config_path, ckpt_path = work / BEST_CONFIG, work / BEST_CHECKPOINT
    header = (f'The best backbone of the DetNAS search of {config} (tools/nas/search.py) over {checkpoint}:\n'
              f'encoding {key} ({record["flops"] / 1e6:.1f}M multiply-adds, {settings.flops_mode} count), '
              f'{settings.metric} {record["score"]:.3f} on the held-out split with the supernet weights.\n'
              f'Based on {settings.subnet_config or "the search config"}. Retrain it from scratch (or from ImageNet '
              'weights of this encoding):\n'
              f'  python tools/train.py {config_path}\n'
              f'or fine-tune the weights it inherits from the supernet ({ckpt_path}; they load strictly):\n'
              f'  python tools/train.py {config_path} --cfg-options load_from={ckpt_path}')
    meta = dict(nas=dict(key=key, arch=arch, flops=record['flops'], score=record['score'], metric=settings.metric,
                         supernet_checkpoint=str(checkpoint), search_config=str(config),
                         generations=state.generation))
    try:
        write_subnet(out_cfg, weights, meta, config_path, ckpt_path, header)
    except ValueError as exc:
        raise SearchError(f'the found detector does not take the supernet detector\'s weights ({exc}); '
                          'nas_search.subnet_config must describe the same detector (neck, head, classes)') from None
    return dict(key=key, arch=arch, flops=record['flops'], score=record['score'], config=str(config_path),
                checkpoint=str(ckpt_path))
