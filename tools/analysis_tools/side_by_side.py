"""Two mini COCO detectors side by side (default: RetinaNet ShuffleNet V2 1.0x vs mmdet's RetinaNet ResNet-18).

Trains both mini configs on the CPU (tools/main_job.py's job, once per model), then writes
work_dirs/side_by_side/side_by_side.json and prints bbox mAP, seconds per training iteration, parameters and
multiply-adds. A command line over shufflenet_det.apps.side_by_side.

    python tools/analysis_tools/side_by_side.py          # train both (ResNet-18 takes several times longer)
    python tools/analysis_tools/side_by_side.py --reuse  # reuse finished runs, e.g. the one of tools/main_job.py
    python tools/analysis_tools/side_by_side.py --models lite retinanet --reuse   # the lite-m detector vs RetinaNet
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

from shufflenet_det.apps.side_by_side import (  # noqa: E402
                                              DEFAULT_PAIR,
                                              MODEL_NAMES,
                                              check_pair,
                                              compare,
                                              format_comparison,
                                              run_side_by_side,
)
from shufflenet_det.utils.cli import (  # noqa: E402
    add_cfg_options_arg,
    add_overwrite_arg,
    check_output_dir,
    check_output_path,
    fail,
    run_main,
    tool_parser,
)

#: The repository whose configs/ the jobs train.
REPO = Path(__file__).resolve().parents[2]

__all__ = ['compare', 'format_comparison', 'main', 'parse_args']


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = tool_parser(__doc__.split('\n\n')[0],
                    formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--models', nargs=2, default=list(DEFAULT_PAIR), metavar=('A', 'B'),
                   help=f'the two mini models to compare, A\'s cost relative to B\'s; of {sorted(MODEL_NAMES)}')
    p.add_argument('--data-root', default='data/mini_coco', help='the mini dataset (generated if absent)')
    add_overwrite_arg(p, 'replace a dataset of another spec generated earlier at --data-root (refused without it)')
    p.add_argument('--runs-dir', default='work_dirs/main_job',
                   help='one sub-folder per model, the same as tools/main_job.py uses')
    p.add_argument('--out', default='work_dirs/side_by_side/side_by_side.json', help='the comparison JSON')
    p.add_argument('--reuse', action='store_true',
                   help="reuse a model's results.json when it exists (e.g. from tools/main_job.py)")
    p.add_argument('--threads', type=int, help='torch CPU threads (default: torch\'s choice)')
    p.add_argument('--timing-rounds', type=int, default=8,
                   help='training steps per model for the interleaved timing (0 skips it)')
    add_cfg_options_arg(p, 'override settings of both configs alike, key=value')
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args.threads is not None and args.threads < 1:
        fail(f'--threads must be >= 1, got {args.threads}')
    try:
        pair = check_pair(tuple(args.models))
    except ValueError as exc:
        fail(str(exc))
    if args.timing_rounds < 0:
        fail(f'--timing-rounds must be >= 0 (0 skips the timing), got {args.timing_rounds}')
    check_output_path(args.out, '--out')
    check_output_dir(args.runs_dir, '--runs-dir')
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    record = run_side_by_side(REPO / 'configs', args.out, data_root=args.data_root, runs_dir=args.runs_dir,
                              reuse=args.reuse, timing_rounds=args.timing_rounds, cfg_options=args.cfg_options,
                              pair=pair, overwrite=args.overwrite)
    print(format_comparison(record))
    print(f'written to {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(run_main(main))
