"""Generate the synthetic mini COCO dataset (see shufflenet_det/datasets/mini_coco.py).

Examples::

    python tools/misc/make_mini_coco.py                                # data/mini_coco, default spec
    python tools/misc/make_mini_coco.py --num-train 50 --num-val 10 --image-size 128 --out /tmp/tiny
    python tools/misc/make_mini_coco.py --classes circle square ring --clutter 0 --seed 3 --overwrite
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Optional, Sequence

from shufflenet_det.datasets.mini_coco import SHAPE_CLASSES, MiniCocoSpec, generate
from shufflenet_det.utils.cli import add_overwrite_arg, run_main, tool_parser

DEFAULTS = MiniCocoSpec()


def image_size(text: str) -> tuple[int, int]:
    """``256`` or ``320x256`` (width x height)."""
    try:
        parts = [int(p) for p in text.lower().split('x')]
    except ValueError:
        parts = []
    if len(parts) == 1:
        return parts[0], parts[0]
    if len(parts) == 2:
        return parts[0], parts[1]
    raise argparse.ArgumentTypeError(f'{text!r} is not an image size; use N or WxH, e.g. 256 or 320x256')


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = tool_parser('Generate a deterministic COCO-format synthetic detection dataset '
                    '(annotations/instances_{train,val}2017.json + train2017/ val2017/)',
                    formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--out', default='data/mini_coco', help='output folder (written atomically)')
    p.add_argument('--num-train', type=int, default=DEFAULTS.num_train, help='training images')
    p.add_argument('--num-val', type=int, default=DEFAULTS.num_val, help='validation images')
    p.add_argument('--image-size', type=image_size, default=(DEFAULTS.image_width, DEFAULTS.image_height),
                   help='N or WxH')
    p.add_argument('--min-objects', type=int, default=DEFAULTS.min_objects, help='objects per image, at least')
    p.add_argument('--max-objects', type=int, default=DEFAULTS.max_objects,
                   help='objects per image, at most (an object finding no free place is dropped)')
    p.add_argument('--min-size', type=int, default=DEFAULTS.min_size, help='smallest longer box side, pixels')
    p.add_argument('--max-size', type=int, default=DEFAULTS.max_size, help='largest longer box side, pixels')
    p.add_argument('--max-aspect', type=float, default=DEFAULTS.max_aspect, help='largest box aspect ratio')
    p.add_argument('--classes', nargs='+', default=list(DEFAULTS.classes), metavar='NAME',
                   help=f'object classes, from {list(SHAPE_CLASSES)}')
    p.add_argument('--clutter', type=float, default=DEFAULTS.clutter,
                   help='background distractors and pixel noise, 0 (clean) to 1')
    p.add_argument('--seed', type=int, default=DEFAULTS.seed, help='random seed')
    p.add_argument('--format', dest='image_format', choices=['png', 'jpg'], default=DEFAULTS.image_format,
                   help='image file format')
    add_overwrite_arg(p, 'replace an existing dataset made by this tool (never a file, nor a folder with other '
                         'content)')
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    try:
        spec = MiniCocoSpec(num_train=args.num_train, num_val=args.num_val, image_width=args.image_size[0],
                            image_height=args.image_size[1], min_objects=args.min_objects,
                            max_objects=args.max_objects, min_size=args.min_size, max_size=args.max_size,
                            max_aspect=args.max_aspect, classes=tuple(args.classes), clutter=args.clutter,
                            seed=args.seed, image_format=args.image_format)
    except ValueError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    start = time.perf_counter()
    try:
        root = generate(args.out, spec, overwrite=args.overwrite)
    except FileExistsError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 1
    print(f'wrote {spec.num_train} train + {spec.num_val} val images ({spec.image_width}x{spec.image_height}, '
          f'classes {list(spec.classes)}) to {root} in {time.perf_counter() - start:.1f} s')
    return 0


if __name__ == '__main__':
    sys.exit(run_main(main))
