"""Two mini-COCO detectors side by side on the same data and schedule: by default RetinaNet with ShuffleNet V2 1.0x vs
mmdet's RetinaNet with ResNet-18; ``('lite', 'retinanet')`` puts the lite-m detector next to RetinaNet-ShuffleNetV2.

The body of ``tools/analysis_tools/side_by_side.py``: one mini job per model (:func:`.mini_job.run_job`, or its
``results.json`` reused), optionally both models stepped in turn for a fair speed ratio
(:func:`.mini_job.interleaved_step_times`), and one comparison record (:func:`compare`).
"""
from __future__ import annotations

import json
import os
from typing import Any, Mapping, Optional

from ..utils.io import same_file, write_json_atomic
from .mini_job import MINI_CONFIGS, format_table, interleaved_step_times, mini_config, run_job

#: Display names of the keys of :data:`.mini_job.MINI_CONFIGS`.
MODEL_NAMES = {'retinanet': 'RetinaNet ShuffleNetV2 1.0x', 'retinanet-r18': 'RetinaNet ResNet-18',
               'faster-rcnn': 'Faster R-CNN ShuffleNetV2 1.0x', 'lite': 'Lite-m ShuffleNetV2 1.0x',
               'lite-s': 'Lite-s ShuffleNetV2 0.5x', 'lite-l': 'Lite-l ShuffleNetV2 1.5x',
               'lite-detnas': 'Lite-m DetNAS COCO-FPN-300M', 'picodet-s': 'PP-PicoDet-S ESNet-S'}
#: The default pair: the first model's cost is reported relative to the second's.
DEFAULT_PAIR = ('retinanet', 'retinanet-r18')


def check_pair(pair: tuple[str, str]) -> tuple[str, str]:
    """ValueError unless ``pair`` is two different keys of :data:`MODEL_NAMES`."""
    if len(pair) != 2 or pair[0] == pair[1] or any(k not in MODEL_NAMES for k in pair):
        raise ValueError(f'--models takes two different models of {sorted(MODEL_NAMES)}, got {list(pair)}')
    return tuple(pair)  # type: ignore[return-value]


#: The entries of a results.json that :func:`compare` reads.
RESULT_KEYS = {'config': None, 'work_dir': None, 'metrics': None, 'train': ('seconds_per_iter', 'seconds', 'epochs',
                                                                           'batch_size'),
               'environment': None, 'model': ('params', 'params_used', 'flops', 'flops_input'), 'dataset': ('spec',)}


def read_results(path: str | os.PathLike) -> dict[str, Any]:
    """A results.json of :func:`.mini_job.run_job`; ValueError naming the file when it is unreadable, not JSON or
    lacks an entry the comparison needs (a job killed while writing it, an edited file)."""
    try:
        with open(path, encoding='utf-8') as f:
            data = json.load(f)
    except (OSError, ValueError) as exc:
        raise ValueError(f'results file {str(path)!r} cannot be reused: not readable JSON ({exc}); delete it or '
                         'run without --reuse') from exc
    missing = []
    if not isinstance(data, dict):
        missing = ['(a JSON object)']
    else:
        for key, sub in RESULT_KEYS.items():
            if not isinstance(data.get(key), dict if sub or key in ('metrics', 'environment') else str):
                missing.append(key)
            elif sub:
                missing += [f'{key}.{k}' for k in sub if k not in data[key]]
    if missing:
        raise ValueError(f'results file {str(path)!r} cannot be reused: it lacks {", ".join(missing)} (not a '
                         'tools/main_job.py results file, or an older one); delete it or run without --reuse')
    return data


def check_results_model(results: dict[str, Any], path: str | os.PathLike, key: str,
                        config: str) -> dict[str, Any]:
    """``results`` (read from ``path``) if its ``config`` is the mini config of model ``key`` (``config``);
    ValueError naming the file and both models otherwise (a job of another model run with this model's work dir)."""
    written = os.path.basename(str(results['config']))
    if written == os.path.basename(config):
        return results
    other = next((k for k, v in MINI_CONFIGS.items() if os.path.basename(v) == written), None)
    raise ValueError(f'results file {str(path)!r} is of {f"the {other} model" if other else "another config"} '
                     f'(its config: {results["config"]}), not of {key} ({os.path.basename(config)}): refusing to show '
                     f'it as {key}; train {key} into its own work dir (run without --reuse)')


def compare(runs: Mapping[str, dict], step_times: Optional[Mapping[str, float]] = None,
            pair: tuple[str, str] = DEFAULT_PAIR) -> dict[str, Any]:
    """The side-by-side record: one row per model of ``pair``, and the first one's cost relative to the second's
    (``ratios``, with ``ratio_of`` naming them).

    ``seconds_per_iter`` comes from each model's own training run; ``interleaved_seconds_per_step`` (when given)
    from stepping both models in turn, under the same machine load, and is the one the speed ratio uses.
    """
    rows = []
    for key in check_pair(pair):
        r = runs[key]
        row = dict(model=MODEL_NAMES[key], config=r['config'],
                   bbox_mAP=r['metrics'].get('bbox_mAP'), bbox_mAP_50=r['metrics'].get('bbox_mAP_50'),
                   bbox_mAP_75=r['metrics'].get('bbox_mAP_75'),
                   seconds_per_iter=r['train']['seconds_per_iter'], train_seconds=r['train']['seconds'],
                   load_average=r['environment'].get('load_average'),
                   params=r['model']['params'], params_used=r['model']['params_used'],
                   flops=r['model']['flops'], results=os.path.join(r['work_dir'], 'results.json'))
        if step_times:
            row['interleaved_seconds_per_step'] = step_times[key]
        rows.append(row)
    a, b = rows
    speed_key = 'interleaved_seconds_per_step' if step_times else 'seconds_per_iter'
    ratio = {k: round(a[k] / b[k], 3) for k in (speed_key, 'params_used', 'flops') if a[k] is not None and b[k]}
    first = runs[pair[0]]
    return dict(data=first['dataset']['spec'], schedule=dict(epochs=first['train']['epochs'],
                                                             batch_size=first['train']['batch_size']),
                flops_input=first['model']['flops_input'], models=rows, ratios=ratio,
                ratio_of=f'{MODEL_NAMES[pair[0]]} / {MODEL_NAMES[pair[1]]}', environment=first['environment'])


def format_comparison(record: Mapping[str, Any]) -> str:
    """The record of :func:`compare` as a text table."""
    timed = 'interleaved_seconds_per_step' in record['models'][0]
    head = f"{'model':<30}{'mAP':>7}{'mAP50':>7}{'s/iter':>8}{'s/step*' if timed else '':>9}{'params(M)':>11}" \
           f"{'GMACs':>8}"
    lines = [f"side by side on mini COCO ({record['schedule']['epochs']} epochs x batch "
             f"{record['schedule']['batch_size']} for {record['models'][0]['model']}, "
             f"{record['flops_input'][2]}x{record['flops_input'][3]})", head]
    for r in record['models']:
        step = f"{r['interleaved_seconds_per_step']:>9.3f}" if timed else f"{'':>9}"
        per_iter = f"{'n/a':>8}" if r['seconds_per_iter'] is None else f"{r['seconds_per_iter']:>8.3f}"
        lines.append(f"{r['model']:<30}{r['bbox_mAP'] or 0:>7.3f}{r['bbox_mAP_50'] or 0:>7.3f}"
                     f"{per_iter}{step}{r['params_used'] / 1e6:>11.2f}{r['flops'] / 1e9:>8.3f}")
    lines.append('s/iter: during each training run (n/a: the run trained no iteration, e.g. a resume after its '
                 'last epoch); ' + ('s/step*: both models stepped in turn on the same batch (same machine load)'
                                    if timed else ''))
    lines.append(f"{record['ratio_of']}: " + ', '.join(f'{k} x{v}' for k, v in record['ratios'].items()))
    return '\n'.join(lines)


def run_side_by_side(config_root: str | os.PathLike, out: str | os.PathLike, data_root: str = 'data/mini_coco',
                     runs_dir: str = 'work_dirs/main_job', reuse: bool = False, timing_rounds: int = 8,
                     cfg_options: Optional[dict] = None, pair: tuple[str, str] = DEFAULT_PAIR,
                     overwrite: bool = False) -> dict[str, Any]:
    """Train (or, with ``reuse``, read back) both models of ``pair``, time them in turn (``timing_rounds`` steps
    each; 0 skips it), write the comparison record to ``out`` and return it.

    ``config_root`` is the folder holding ``mini/`` (the repository's ``configs/``); each model's job runs in
    ``<runs_dir>/<config name>``, the folder ``tools/main_job.py`` uses, so its finished runs can be reused (a
    reused file must be of that model). ``out`` must not be one of those results files; ``overwrite``: replace a
    dataset of another spec at ``data_root`` (:func:`.mini_job.run_job`).
    """
    pair = check_pair(pair)
    runs, jobs = {}, {}
    for key in pair:  # every reused file is read first: a bad one fails before any training
        config = mini_config(key, config_root)
        work_dir = os.path.join(runs_dir, os.path.splitext(os.path.basename(config))[0])
        cached = os.path.join(work_dir, 'results.json')
        if same_file(out, cached):
            raise ValueError(f'--out {str(out)!r} is the results file of the {key} job ({cached}): refusing to '
                             'overwrite it; choose another --out')
        if reuse and os.path.isfile(cached):
            runs[key] = check_results_model(read_results(cached), cached, key, config)
            print(f'reusing {cached}')
        else:
            jobs[key] = (config, work_dir)
    for key in pair:
        if key in jobs:
            runs[key] = run_job(*jobs[key], data_root=data_root, cfg_options=cfg_options, overwrite=overwrite)
        print(format_table(runs[key]) + '\n')
    step_times = None
    if timing_rounds > 0:
        step_times = interleaved_step_times({key: mini_config(key, config_root) for key in pair}, data_root,
                                            rounds=timing_rounds)
    record = compare(runs, step_times, pair)
    format_comparison(record)  # what the tool prints: a record it cannot show is not written either
    write_json_atomic(record, out, what='comparison')
    return record
