"""DetNAS evolutionary backbone search over a trained supernet detector (shufflenet_det/apps/nas_search.py).

The pipeline (mini COCO on a CPU; the COCO configs are configs/nas/faster-rcnn_detnas-supernet-*_coco.py)::

    python tools/misc/make_mini_coco.py                                            # data/mini_coco
    python tools/nas/split_coco.py data/mini_coco/annotations/instances_train2017.json --num-val 100
    python tools/train.py configs/nas/retinanet_detnas-supernet-300m_fpn_mini-coco.py          # the supernet
    python tools/nas/search.py configs/nas/retinanet_detnas-supernet-300m_fpn_mini-coco.py \\
        work_dirs/retinanet_detnas-supernet-300m_fpn_mini-coco/epoch_8.pth
    python tools/train.py work_dirs/nas_search/retinanet_detnas-supernet-300m_fpn_mini-coco/best_config.py

A search killed at any moment continues with ``--resume`` (same config and checkpoint; ``--cfg-options
nas_search.generations=N`` may extend it). Settings: the config's ``nas_search`` section, overridable with
``--cfg-options nas_search.population_size=20 ...``.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

# OpenMP threads that spin while waiting slow CPU runs down badly on a shared machine (see tools/main_job.py).
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')

from shufflenet_det.utils.cli import check_output_dir, fail, run_main, tool_parser  # noqa: E402


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = tool_parser('DetNAS evolutionary search of a backbone over a trained supernet detector (its config needs a '
                    'nas_search section)',
                    config='the supernet detector config (backbone type DetNASSupernet, nas_search section)',
                    work_dir='output folder (default: work_dirs/nas_search/<config name>)',
                    cfg_options='override config settings, key=value, e.g. nas_search.generations=4')
    p.add_argument('checkpoint', help='the supernet checkpoint written by tools/train.py CONFIG')
    p.add_argument('--resume', action='store_true', help='continue the search in the work dir (its search_state.json)')
    p.add_argument('--threads', type=int, help="torch CPU threads, >= 1 (default: torch's choice)")
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args.threads is not None and args.threads < 1:
        fail(f'--threads must be >= 1, got {args.threads}')
    if not os.path.isfile(args.config):
        fail(f'config {args.config!r} does not exist')
    from shufflenet_det.apps.nas_search import default_work_dir, run_search
    work_dir = args.work_dir or default_work_dir(args.config)
    check_output_dir(work_dir, '--work-dir')  # before the supernet is built and references are scored
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    run_search(args.config, args.checkpoint, work_dir=work_dir, resume=args.resume, cfg_options=args.cfg_options)
    return 0


if __name__ == '__main__':
    sys.exit(run_main(main))
