"""Split a COCO training annotation file into a supernet-training part and a held-out part for the search.

The search (tools/nas/search.py) scores candidates on the held-out part, never on the validation set of the final
figures. Both files are written together, atomically, next to the input by default::

    python tools/nas/split_coco.py data/mini_coco/annotations/instances_train2017.json --num-val 100
    # -> instances_train2017_nas-train.json (300 images), instances_train2017_nas-val.json (100 images)
    python tools/nas/split_coco.py data/coco/annotations/instances_train2017.json --num-val 5000
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from shufflenet_det.utils.cli import add_overwrite_arg, run_main, tool_parser


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = tool_parser('Split a COCO training annotation file by image ids into a '
                    'supernet-training part and a held-out part for the DetNAS search')
    p.add_argument('ann_file', help='COCO instances JSON of the training set')
    p.add_argument('--num-val', type=int, required=True, help='images held out for scoring the search candidates')
    p.add_argument('--seed', type=int, default=0, help='seed of the image selection')
    p.add_argument('--out-train', help='training part (default: <ann_file stem>_nas-train.json beside it)')
    p.add_argument('--out-val', help='held-out part (default: <ann_file stem>_nas-val.json beside it)')
    add_overwrite_arg(p, 'replace existing outputs that hold another split')
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    from shufflenet_det.nas.data import write_coco_split
    train, held, written = write_coco_split(args.ann_file, args.num_val, args.seed, args.out_train, args.out_val,
                                            overwrite=args.overwrite)
    print(f'{"wrote" if written else "up to date"}: {train} and {held} ({args.num_val} images held out, seed '
          f'{args.seed})')
    return 0


if __name__ == '__main__':
    sys.exit(run_main(main))
