"""RetinaNet with ShuffleNet V2 1.0x vs mmdet's RetinaNet with ResNet-18, on the same mini COCO data and schedule.

Trains both mini configs on the CPU (tools/main_job.py's job, once per model), then writes
work_dirs/side_by_side/side_by_side.json and prints bbox mAP, seconds per training iteration, parameters and
multiply-adds.

    python tools/analysis_tools/side_by_side.py          # train both (ResNet-18 takes several times longer)
    python tools/analysis_tools/side_by_side.py --reuse  # reuse finished runs, e.g. the one of tools/main_job.py
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Optional, Sequence

# OpenMP threads that spin while waiting for work make CPU training many times slower as soon as another process
# shares the cores (measured on a shared 2-core machine, mini RetinaNet, batch 8: 28.8 s/iter spinning, 1.7 s/iter
# passive); on an idle machine passive waiting costs at most a few percent. Set before torch is imported; an
# explicit OMP_WAIT_POLICY wins.
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from mmengine.config import DictAction  # noqa: E402

from shufflenet_det.engine.atomic_io import write_atomic  # noqa: E402
from shufflenet_det.engine.mini_job import (MINI_CONFIGS, format_table, interleaved_step_times,  # noqa: E402
                                            run_job)

MODELS = (('retinanet', 'ShuffleNetV2 1.0x'), ('retinanet-r18', 'ResNet-18'))


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--data-root', default='data/mini_coco', help='the mini dataset (generated if absent)')
    p.add_argument('--runs-dir', default='work_dirs/main_job',
                   help='one sub-folder per model, the same as tools/main_job.py uses')
    p.add_argument('--out', default='work_dirs/side_by_side/side_by_side.json', help='the comparison JSON')
    p.add_argument('--reuse', action='store_true',
                   help="reuse a model's results.json when it exists (e.g. from tools/main_job.py)")
    p.add_argument('--threads', type=int, help='torch CPU threads (default: torch\'s choice)')
    p.add_argument('--timing-rounds', type=int, default=8,
                   help='training steps per model for the interleaved timing (0 skips it)')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='override settings of both configs alike, key=value')
    return p.parse_args(argv)


def compare(runs: dict[str, dict], step_times: Optional[dict[str, float]] = None) -> dict:
    """The side-by-side record: one row per model, and ShuffleNet's cost relative to ResNet-18.

    ``seconds_per_iter`` comes from each model's own training run; ``interleaved_seconds_per_step`` (when given)
    from stepping both models in turn, under the same machine load, and is the one the speed ratio uses.
    """
    rows = []
    for key, backbone in MODELS:
        r = runs[key]
        row = dict(model=f'RetinaNet {backbone}', config=r['config'],
                   bbox_mAP=r['metrics'].get('bbox_mAP'), bbox_mAP_50=r['metrics'].get('bbox_mAP_50'),
                   bbox_mAP_75=r['metrics'].get('bbox_mAP_75'),
                   seconds_per_iter=r['train']['seconds_per_iter'], train_seconds=r['train']['seconds'],
                   load_average=r['environment'].get('load_average'),
                   params=r['model']['params'], params_used=r['model']['params_used'],
                   flops=r['model']['flops'], results=os.path.join(r['work_dir'], 'results.json'))
        if step_times:
            row['interleaved_seconds_per_step'] = step_times[key]
        rows.append(row)
    snet, r18 = rows
    speed_key = 'interleaved_seconds_per_step' if step_times else 'seconds_per_iter'
    ratio = {k: round(snet[k] / r18[k], 3) for k in (speed_key, 'params_used', 'flops') if r18[k]}
    first = runs[MODELS[0][0]]
    return dict(data=first['dataset']['spec'], schedule=dict(epochs=first['train']['epochs'],
                                                             batch_size=first['train']['batch_size']),
                flops_input=first['model']['flops_input'], models=rows, shufflenet_over_resnet18=ratio,
                environment=first['environment'])


def format_comparison(record: dict) -> str:
    timed = 'interleaved_seconds_per_step' in record['models'][0]
    head = f"{'model':<30}{'mAP':>7}{'mAP50':>7}{'s/iter':>8}{'s/step*' if timed else '':>9}{'params(M)':>11}" \
           f"{'GMACs':>8}"
    lines = [f"side by side on mini COCO ({record['schedule']['epochs']} epochs x batch "
             f"{record['schedule']['batch_size']}, {record['flops_input'][2]}x{record['flops_input'][3]})", head]
    for r in record['models']:
        step = f"{r['interleaved_seconds_per_step']:>9.3f}" if timed else f"{'':>9}"
        lines.append(f"{r['model']:<30}{r['bbox_mAP'] or 0:>7.3f}{r['bbox_mAP_50'] or 0:>7.3f}"
                     f"{r['seconds_per_iter']:>8.3f}{step}{r['params_used'] / 1e6:>11.2f}{r['flops'] / 1e9:>8.3f}")
    lines.append('s/iter: during each training run; ' + ('s/step*: both models stepped in turn on the same batch '
                                                          '(same machine load)' if timed else ''))
    lines.append('ShuffleNet / ResNet-18: ' + ', '.join(f'{k} x{v}' for k, v in
                                                        record['shufflenet_over_resnet18'].items()))
    return '\n'.join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    runs = {}
    for key, _ in MODELS:
        config = MINI_CONFIGS[key]
        work_dir = os.path.join(args.runs_dir, os.path.splitext(os.path.basename(config))[0])
        cached = os.path.join(work_dir, 'results.json')
        if args.reuse and os.path.isfile(cached):
            with open(cached) as f:
                runs[key] = json.load(f)
            print(f'reusing {cached}')
        else:
            runs[key] = run_job(config, work_dir, data_root=args.data_root, cfg_options=args.cfg_options)
        print(format_table(runs[key]) + '\n')
    step_times = None
    if args.timing_rounds > 0:
        step_times = interleaved_step_times({key: MINI_CONFIGS[key] for key, _ in MODELS}, args.data_root,
                                            rounds=args.timing_rounds)
    record = compare(runs, step_times)
    write_atomic(json.dumps(record, indent=2).encode(), args.out)
    print(format_comparison(record))
    print(f'written to {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
