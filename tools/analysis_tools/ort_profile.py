"""Where ONNX models spend their time in ONNX Runtime: kernel times by operator and by kind, side by side.

Each MODEL runs in two sessions with the options of the benchmark's ort-deploy / ort-raw / peer rows (every graph
optimisation, --threads intra-op threads), one with ONNX Runtime's profiler on and one without (the run times: the
profiler slows the runs down); the models' runs alternate in --rounds rounds. Printed per model: the median run time,
the kernels' time split into convolutions, data movement (concat,
split, slices, transposes, reshapes, NCHWc reorders, resizing) and the rest, the convolutions' multiply-adds and rate
(GMAC/s, and the share of the rate ONNX Runtime reaches on one large 1x1 convolution here), the time per operator type
(as ONNX Runtime runs them, after its graph optimisations) and the slowest nodes. With two or more models, the first
is compared with each other one: the ratio of their median run times, and that ratio with every operation outside
the first model's convolutions removed (its run time times the convolutions' share of its kernel time): the floor
of any rewrite that keeps its convolutions as they run.

Examples::

    # lite-m's deploy export next to NanoDet-Plus-m's ONNX export (see docs/benchmarks.md for the files), 1 thread
    python tools/deploy/export_onnx.py --config configs/lite/lite-m_shufflenetv2-1x_300e_coco-320.py --no-nms \\
        --simplify onnxslim --out work_dirs/deploy/lite-m_320_raw.onnx
    python tools/analysis_tools/ort_profile.py work_dirs/deploy/lite-m_320_raw.onnx \\
        work_dirs/peers/nanodet-plus-m_320.onnx --size 320 320 --threads 1 --out work_dirs/bench/profile_lite-m.json
"""
from __future__ import annotations

import argparse
import sys
from typing import Any, Optional, Sequence

from shufflenet_det.utils.cli import check_output_path, fail, refuse_input_overwrite, run_main, tool_parser


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = tool_parser('Profile ONNX models in ONNX Runtime: time by operator and kind (convolutions, data '
                         'movement, the rest), side by side.',
                         formatter_class=argparse.RawDescriptionHelpFormatter,
                         epilog='Examples' + __doc__.split('Examples', 1)[1])
    parser.add_argument('models', nargs='+', metavar='MODEL', help='ONNX files (one NCHW input each); the first is '
                        'compared with the others')
    parser.add_argument('--size', type=int, nargs=2, metavar=('H', 'W'),
                        help='input height and width where a model\'s are dynamic (batch 1 where dynamic)')
    parser.add_argument('--threads', type=int, default=1, help='ONNX Runtime intra-op threads (default 1)')
    parser.add_argument('--runs', type=int, default=200, help='timed runs per model (default 200)')
    parser.add_argument('--warmup', type=int, default=20, help='untimed runs per model first (default 20)')
    parser.add_argument('--rounds', type=int, default=10,
                        help='rounds the timed runs are split into, the models alternating (default 10)')
    parser.add_argument('--top', type=int, default=10, help='slowest nodes listed per model (default 10; 0: none)')
    parser.add_argument('--no-reference', action='store_true',
                        help='skip timing the reference 1x1 convolution (256 -> 256 channels, 56x56)')
    parser.add_argument('--out', help='JSON file for the profiles')
    args = parser.parse_args(argv)
    for name, low in (('threads', 1), ('runs', 1), ('warmup', 0), ('rounds', 1), ('top', 0)):
        if getattr(args, name) < low:
            parser.error(f'--{name} must be >= {low}, got {getattr(args, name)}')
    if args.rounds > args.runs:
        parser.error(f'--rounds ({args.rounds}) must not exceed --runs ({args.runs})')
    if args.size is not None and min(args.size) < 1:
        parser.error(f'--size must be two positive integers, got {args.size}')
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    from pathlib import Path

    from shufflenet_det.benchmark import check_peer_onnx
    from shufflenet_det.utils.io import same_file
    for i, a in enumerate(args.models):
        for b in args.models[:i]:
            if Path(a).exists() and same_file(a, b):
                fail(f'MODEL {a!r} is given twice (as {b!r}): give each model once')
    refuse_input_overwrite([('--out', args.out)], [('MODEL', m) for m in args.models])
    check_output_path(args.out, '--out')
    models = [check_peer_onnx(m, option='MODEL') for m in args.models]

    from shufflenet_det.benchmark.ort_profile import (
        format_profile,
        input_shape_of,
        ort_floor,
        profile_models,
        reference_conv_rate,
    )
    from shufflenet_det.benchmark.report import environment
    from shufflenet_det.runtime.timing import compare_with_first
    from shufflenet_det.utils.io import write_json_atomic
    size = tuple(args.size) if args.size else None
    for model in models:
        input_shape_of(model, size)  # a missing or contradicting --size fails before any work
    reference = None if args.no_reference else reference_conv_rate(args.threads)
    if reference is not None:
        print(f'reference: one 1x1 convolution 256 -> 256 channels at 56x56 runs at {reference:.1f} GMAC/s '
              f'({args.threads} thread(s))')
    profiles = profile_models(models, size, args.threads, args.runs, args.warmup, args.rounds)
    for p in profiles:
        print(format_profile(p, args.top, reference))
    comparisons = compare_with_first([p.path for p in profiles], [p.run_ms for p in profiles],
                                     [ort_floor(profiles[0], p) for p in profiles[1:]])
    if args.out:
        result: dict[str, Any] = dict(
            threads=args.threads, runs=args.runs, warmup=args.warmup, rounds=args.rounds,
            reference_conv_gmacs_per_s=reference, profiles=[p.to_json(args.top) for p in profiles],
            comparisons=comparisons, environment=environment())
        print(f'saved {write_json_atomic(result, args.out, what="--out profile")}')
    return 0


if __name__ == '__main__':
    sys.exit(run_main(main))
