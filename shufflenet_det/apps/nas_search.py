"""The DetNAS evolutionary search over a trained supernet detector: the body of ``tools/nas/search.py``.

Input: a detector config whose backbone is a ``DetNASSupernet`` and which holds a ``nas_search`` section, and the
supernet checkpoint its training (``tools/train.py`` with ``UniformPathSamplerHook``) wrote. Each candidate path is
scored by COCO mAP on a held-out split after recalibrating the BN statistics on training images
(:mod:`shufflenet_det.nas.evaluate`); paths outside the multiply-add budget are never scored
(:mod:`shufflenet_det.nas.flops`); the population evolves as in SPOS / DetNAS (:mod:`shufflenet_det.nas.evolution`).

The ``nas_search`` section and its keys: :mod:`.nas_settings`.

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
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

from ..utils.io import atomic_outputs, file_sha256
from .nas_settings import (
                           DEFAULTS,
                           REQUIRED,
                           SearchError,
                           SearchSettings,
                           check_search_data,
                           fingerprint,
                           parse_settings,
                           reference_paths,
                           resolve_subnet_config,
                           to_plain,
)

__all__ = ['BEST_CHECKPOINT', 'BEST_CONFIG', 'DEFAULTS', 'LOG_FILE', 'PLOT_FILE', 'REQUIRED', 'STATE_FILE',
           'STATE_VERSION', 'SearchError', 'SearchSettings', 'build_scorer', 'check_budget', 'check_search_data',
           'default_work_dir', 'export_best', 'fingerprint', 'parse_settings', 'reference_paths',
           'resolve_subnet_config', 'run_search']

STATE_FILE = 'search_state.json'
LOG_FILE = 'search_log.json'
PLOT_FILE = 'search.png'
BEST_CONFIG = 'best_config.py'
BEST_CHECKPOINT = 'best_subnet.pth'
STATE_VERSION = 1

def default_work_dir(config: str) -> str:
    return os.path.join('work_dirs', 'nas_search', os.path.splitext(os.path.basename(config))[0])


def build_scorer(cfg: Any, settings: SearchSettings, state_dict: Mapping[str, Any],
                 source: str = 'supernet checkpoint') -> Any:
    """The :class:`~shufflenet_det.nas.evaluate.PathScorer` of a search: the supernet detector of ``cfg`` with
    ``state_dict`` (every key and shape must fit: :class:`~shufflenet_det.utils.checkpoint.CheckpointError` naming
    ``source`` otherwise; SyncBN reverted to BN), the calibration and held-out loaders and the evaluator of
    ``settings``."""
    from mmengine.evaluator import Evaluator
    from mmengine.runner import Runner

    from ..nas.evaluate import PathScorer, quiet
    from ..utils.build import build_model
    from ..utils.checkpoint import check_state_dict_fits

    model_cfg = copy.deepcopy(cfg.model)
    model_cfg['backbone']['init_cfg'] = None
    model = build_model(model_cfg, revert_sync_bn=True)
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


def _load_search(config: str, cfg_options: Optional[Mapping[str, Any]]) -> tuple[Any, SearchSettings, Any, list]:
    """``(cfg, settings, space, references)`` of the search ``config``: the loaded config, its ``nas_search``
    settings, the supernet's search space and the reference paths; :class:`SearchError` naming what is wrong."""
    from ..models.backbones.detnas_supernet import SearchSpace
    from ..utils.build import ConfigError, load_config

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
    return cfg, settings, space, reference_paths(space, settings.references)


def _check_work_dir(work: Path, resume: bool, checkpoint: str, config: str) -> None:
    """SearchError unless ``work`` holds a search exactly when ``resume`` asks to continue one, and the supernet
    ``checkpoint`` exists."""
    state_file = work / STATE_FILE
    if state_file.exists() and not resume:
        raise SearchError(f'{str(work)!r} already holds a search ({STATE_FILE}): pass --resume to continue it, or '
                          'choose another --work-dir')
    if resume and not state_file.is_file():
        raise SearchError(f'--resume: {str(state_file)!r} does not exist (nothing to continue; run without --resume)')
    if not os.path.isfile(checkpoint):
        raise SearchError(f'supernet checkpoint {checkpoint!r} does not exist (train the supernet first: '
                          f'python tools/train.py {config})')


def _read_resume_state(work: Path, space: Any, print_fp: Mapping[str, str]) -> tuple[dict[str, Any], Any]:
    """``(saved, state)``: the ``search_state.json`` document of ``work`` and its search state, checked against the
    space and the fingerprint of this search; SearchError when it is corrupt or of another search."""
    from ..nas.evolution import SearchState

    state_file = work / STATE_FILE
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
    return saved, state


@dataclass
class _SearchRun:
    """One search in progress (the steps of :func:`run_search`): its inputs, the evolution state and the files of
    the work dir, rewritten after every generation."""

    config: str
    checkpoint: str
    cfg: Any
    settings: SearchSettings
    space: Any
    work: Path
    print_fp: dict[str, str]
    log: Callable[[str], None]
    start: float
    elapsed_before: float = 0.0
    refs: list = field(default_factory=list)
    state: Any = None
    counter: Any = None
    scorer: Any = None
    search: Any = None

    def elapsed(self) -> float:
        """Seconds of this search, those of the runs it continues included."""
        return self.elapsed_before + time.perf_counter() - self.start

    def build(self) -> None:
        """The multiply-add counter (the budget checked), the supernet scorer and the evolution."""
        import torch

        from ..nas.evolution import EvolutionarySearch
        from ..nas.flops import PathFlops
        from ..utils.checkpoint import read_state_dict

        self.counter = PathFlops(self.cfg.model, self.settings.flops_mode, self.settings.flops_input)
        check_budget(self.space, self.counter, self.settings.evolution.flops_limit)
        state_dict = read_state_dict(self.checkpoint, what='supernet checkpoint')
        self.scorer = build_scorer(self.cfg, self.settings, state_dict, f'supernet checkpoint {self.checkpoint!r}')
        self.log(f'[nas search] space {self.space.layout()} ({self.space.num_blocks} units, {self.space.size:.3g} '
                 f'paths); supernet {self.checkpoint}; work dir {self.work}; torch threads {torch.get_num_threads()}')
        self.search = EvolutionarySearch(self.space, self.settings.evolution, self.counter, self.scorer)

    def resume_from(self, saved: Mapping[str, Any], state: Any) -> None:
        """Continue the search of ``saved`` (its state ``state``)."""
        self.state, self.refs = state, list(saved.get('references', []))
        self.elapsed_before = float(saved.get('elapsed_seconds', 0.0))
        self.log(f'[nas search] resuming after generation {state.generation} of {self.settings.evolution.generations} '
                 f'({len(state.candidates)} candidates scored)')

    def begin(self, references: Sequence[tuple[str, tuple[int, ...]]]) -> None:
        """Score the reference paths, breed generation 0 and save it: a kill from here on resumes without counting
        its multiply-adds again."""
        from ..nas.evolution import path_key
        for name, path in references:
            result = self.scorer(path)
            self.refs.append(dict(name=name, key=path_key(path), path=list(path), flops=self.counter(path),
                                  score=result['score'], metrics=result['metrics']))
            self.log(f"[nas search] reference {name}: {result['score']:.3f} at {self.refs[-1]['flops'] / 1e6:.1f}M "
                     'multiply-adds (supernet weights, BN recalibrated)')
        self.state = self.search.initial_state()
        self.save()

    def documents(self) -> tuple[dict, dict]:
        """``(search_state.json, search_log.json)`` of the search so far."""
        state = self.state
        best_key = state.top_k[0] if state.top_k else None
        best = dict(key=best_key, arch=self.space.arch(state.candidates[best_key]['path']),
                    **state.candidates[best_key]) if best_key else None
        state_doc = dict(version=STATE_VERSION, fingerprint=self.print_fp, search=state.to_dict(), references=self.refs,
                         elapsed_seconds=round(self.elapsed(), 1))
        log_doc = dict(
            config=str(self.config), checkpoint=str(self.checkpoint), space=self.space.layout(),
            settings=to_plain(self.settings.to_dict()),
            generations_done=state.generation, elapsed_seconds=round(self.elapsed(), 1),
            candidates=[dict(key=k, **rec) for k, rec in state.candidates.items()],
            history=state.history, references=self.refs, top_k=list(state.top_k), best=best)
        return state_doc, log_doc

    def save(self) -> dict:
        """Write the state and the log together (atomically); return the log."""
        state_doc, log_doc = self.documents()
        with atomic_outputs([self.work / STATE_FILE, self.work / LOG_FILE], 'search state') as (tmp_state, tmp_log):
            tmp_state.write_text(json.dumps(state_doc, indent=1) + '\n', encoding='utf-8')
            tmp_log.write_text(json.dumps(log_doc, indent=1) + '\n', encoding='utf-8')
        return log_doc

    def plot(self, log_doc: Mapping[str, Any]) -> None:
        """``search.png``: mAP against multiply-adds of every candidate so far."""
        from ..nas.plot import plot_search
        evo = self.settings.evolution
        plot_search(log_doc['candidates'], self.work / PLOT_FILE, evo.generations, evo.flops_limit, evo.flops_min,
                    best=log_doc['best'], references=self.refs,
                    title=f'DetNAS evolutionary search ({len(log_doc["candidates"])} candidates, '
                          f'{self.state.generation} generations)',
                    score_name=f'{self.settings.metric} (held-out split)')

    def evolve(self) -> None:
        """Run the remaining generations, saving, plotting and logging after each."""
        from mmengine.utils import ProgressBar
        generations = self.settings.evolution.generations
        while self.state.generation < generations:
            bar = ProgressBar(len(self.state.population), file=sys.stdout) if self.state.population else None
            self.search.step(self.state, on_candidate=_progress(bar))
            if bar is not None:
                sys.stdout.write('\n')
            self.plot(self.save())
            self.log(_summary_line(self.state, generations, self.elapsed()))

    def finish(self) -> dict[str, Any]:
        """Save the final log and plot, export the best path; return the summary."""
        if not self.state.top_k:
            raise SearchError('no path satisfied the multiply-add budget (nas_search.flops_limit / flops_min): '
                              'nothing was scored')
        log_doc = self.save()
        self.plot(log_doc)
        result = export_best(self.cfg, self.settings, self.state, self.space, self.scorer, self.work, self.config,
                             self.checkpoint, log_doc)
        self.log(f"[nas search] best {result['key']}: {self.settings.metric} {result['score']:.3f} at "
                 f"{result['flops'] / 1e6:.1f}M multiply-adds -> {result['config']} + {result['checkpoint']} "
                 f'({self.elapsed():.0f} s in all)')
        return dict(log_doc, best=result, work_dir=str(self.work))


def run_search(config: str,
               checkpoint: str,
               work_dir: Optional[str] = None,
               resume: bool = False,
               cfg_options: Optional[Mapping[str, Any]] = None,
               log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or, with ``resume``, continue) the search of ``config`` over the supernet weights ``checkpoint``; return
    the summary (also in ``search_log.json``). Every problem found before the search starts raises
    :class:`SearchError` (or :class:`~shufflenet_det.utils.checkpoint.CheckpointError`) naming it."""
    start = time.perf_counter()
    cfg, settings, space, references = _load_search(config, cfg_options)
    work = Path(work_dir or default_work_dir(config))
    _check_work_dir(work, resume, checkpoint, config)
    check_search_data(settings)
    run = _SearchRun(config, checkpoint, cfg, settings, space, work,
                     fingerprint(cfg, settings, file_sha256(checkpoint)), log, start)
    # a corrupt or foreign resume state fails here, before the supernet is built
    resumed = _read_resume_state(work, space, run.print_fp) if resume else None
    run.build()
    if resumed is not None:
        run.resume_from(*resumed)
    else:
        run.begin(references)
    run.evolve()
    return run.finish()


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
