"""The main job: train a ShuffleNet V2 detector on the synthetic mini COCO on the CPU and evaluate it.

Steps: generate data/mini_coco (if absent), train configs/mini/<detector> with mmengine's logging, evaluate COCO bbox
mAP with pycocotools (mmdet's CocoMetric), save ground truth | prediction pictures of validation images, print the
mAP table and write everything to <work-dir>/results.json.

Examples::

    python tools/main_job.py                        # RetinaNet + ShuffleNet V2 1.0x (target: bbox mAP >= 0.5)
    python tools/main_job.py --model faster-rcnn    # Faster R-CNN + ShuffleNet V2 1.0x
    python tools/main_job.py --model retinanet-r18  # mmdet's RetinaNet ResNet-18 on the same data and schedule
    python tools/main_job.py --model lite           # the lite-m detector (NanoDet-Plus design); lite-s / lite-l /
                                                    # lite-detnas: the other lite detectors
    python tools/analysis_tools/side_by_side.py     # both RetinaNets, compared in one JSON/table
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

# OpenMP threads that spin while waiting for work make CPU training many times slower as soon as another process
# shares the cores (measured on a shared 2-core machine, mini RetinaNet, batch 8: 28.8 s/iter spinning, 1.7 s/iter
# passive); on an idle machine passive waiting costs at most a few percent. Set before torch is imported; an
# explicit OMP_WAIT_POLICY wins.
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')

from shufflenet_det.apps.mini_job import MINI_CONFIGS, format_table, mini_config, run_job  # noqa: E402
from shufflenet_det.utils.cli import (  # noqa: E402
    add_cfg_options_arg,
    add_config_arg,
    add_overwrite_arg,
    add_work_dir_arg,
    check_output_dir,
    fail,
    run_main,
    tool_parser,
)

#: The repository whose configs/ the job trains.
REPO = Path(__file__).resolve().parents[1]


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = tool_parser(__doc__.split('\n\n')[0],
                    formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--model', choices=sorted(MINI_CONFIGS),
                   help='which mini config to train (default: retinanet; not together with --config)')
    add_config_arg(p, 'train this config instead of a --model (not together with --model)', option=True)
    p.add_argument('--data-root', default='data/mini_coco',
                   help='where the mini dataset is: generated if absent, reused if it is the one the job needs')
    add_overwrite_arg(p, 'replace a dataset of another spec (other image counts, sizes, seed ...) generated earlier '
                         'at --data-root; without it the job refuses to touch it')
    add_work_dir_arg(p, 'output folder (default: work_dirs/main_job/<config name>)')
    p.add_argument('--target-map', type=float, default=0.5,
                   help='exit with status 1 when the bbox mAP ends below this, a number in [0, 1] (0 disables the '
                        'check)')
    p.add_argument('--num-vis', type=int, default=8,
                   help='validation images drawn into detections.png; 0 draws no picture (results.json is '
                        'written all the same, with "picture": null)')
    p.add_argument('--threads', type=int, help='torch CPU threads, >= 1 (default: torch\'s choice, one per core)')
    p.add_argument('--resume', action='store_true', help='continue an interrupted job from its last checkpoint')
    add_cfg_options_arg(p, 'override config settings, key=value')
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    # every argument is checked before the job starts: a typo must not cost a training run
    if not 0.0 <= args.target_map <= 1.0:  # also refuses nan
        fail(f'--target-map must be a bbox mAP in [0, 1] (0 disables the check), got {args.target_map}')
    if args.num_vis < 0:
        fail(f'--num-vis must be >= 0 (0: no detections picture), got {args.num_vis}')
    if args.threads is not None and args.threads < 1:
        fail(f'--threads must be >= 1, got {args.threads}')
    if args.config and args.model:
        fail(f'--model {args.model} and --config {args.config!r} both choose the config to train: give one of them')
    if args.config and not os.path.isfile(args.config):
        fail(f'--config {args.config!r} does not exist')
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    config = args.config or mini_config(args.model or 'retinanet', REPO / 'configs')
    name = os.path.splitext(os.path.basename(config))[0]
    work_dir = args.work_dir or os.path.join('work_dirs', 'main_job', name)
    check_output_dir(work_dir, '--work-dir')  # before the dataset is generated: a bad work dir leaves nothing
    from shufflenet_det.apps.launch import PretrainedWeightsMissing
    from shufflenet_det.datasets import DatasetCheckError
    from shufflenet_det.utils.build import ConfigError, load_config
    try:
        load_config(config, args.cfg_options)  # a broken config fails before the dataset is generated
        results = run_job(config, work_dir, data_root=args.data_root, cfg_options=args.cfg_options,
                          num_vis=args.num_vis, resume=args.resume, overwrite=args.overwrite)
    except (ConfigError, DatasetCheckError, PretrainedWeightsMissing, FileExistsError, FileNotFoundError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    print('\n' + format_table(results))
    print(f'results: {os.path.join(work_dir, "results.json")}')
    mAP = results['metrics'].get('bbox_mAP', 0.0)
    if args.target_map and mAP < args.target_map:
        print(f'bbox mAP {mAP:.3f} is below the target {args.target_map}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(run_main(main))
