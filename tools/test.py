"""Test (and evaluate) a detector: mmdet's ``tools/test.py`` with the ShuffleNet family registered.

Examples::

    python tools/test.py configs/retinanet_shufflenetv2.py work_dirs/retinanet_shufflenetv2/epoch_12.pth
    python tools/test.py CONFIG CKPT --out results.pkl --show-dir vis     # dump predictions, save drawn images
    bash tools/dist_test.sh CONFIG CKPT 8

CKPT must be a checkpoint of the config's model (every key and shape is checked before anything is evaluated;
``--partial-load`` accepts a partial fit). Errors end with ``error: <message>`` and exit status 2 (``--debug`` shows
the traceback).
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

from shufflenet_det.utils.cli import add_cfg_options_arg, add_launcher_args, add_work_dir_arg, run_main, tool_parser


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = tool_parser('Test (and evaluate) a detector (MMDetection 3.x + shufflenet_det)',
                         config='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file of the config\'s model (read with weights_only=True)')
    parser.add_argument('--partial-load', action='store_true',
                        help='evaluate even if the checkpoint fits the model only partly (another class count, '
                             'width ...): the matching weights are loaded, the others keep their initialisation and '
                             'the mismatch is logged as a warning. Without it a mismatch is an error')
    add_work_dir_arg(parser, 'the dir to save the metrics (default: work_dirs/<config name>)')
    parser.add_argument('--out', help='dump the predictions to this pickle file (.pkl) for offline evaluation')
    parser.add_argument('--show', action='store_true', help='show the predictions in a window')
    parser.add_argument('--show-dir', help='save images drawn with the predictions into work_dir/<timestamp>/'
                                           '<show-dir>')
    parser.add_argument('--wait-time', type=float, default=2, help='seconds each image is shown with --show')
    add_cfg_options_arg(parser, 'override config settings, key=value pairs, e.g. test_dataloader.batch_size=4')
    add_launcher_args(parser, 'job launcher (tools/dist_test.sh sets pytorch)')
    args = parser.parse_args(argv)
    if args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        parser.error(f'--out {args.out!r} must be a .pkl or .pickle file')
    return args


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    from mmdet.engine.hooks.utils import trigger_visualization_hook
    from mmdet.evaluation import DumpDetResults

    import shufflenet_det  # noqa: F401  (compat fixes + registers the backbones and hooks)
    from shufflenet_det.apps.launch import (
        ModelCheckError,
        build_runner,
        distributed_session,
        load_run_config,
        prepare_for,
        start_tool,
    )
    from shufflenet_det.datasets import DatasetCheckError
    from shufflenet_det.utils.build import ConfigError

    start_tool(args.local_rank)
    from shufflenet_det.weights import is_named
    if not is_named(args.checkpoint) and not os.path.isfile(args.checkpoint):  # names are fetched by prepare_for
        raise SystemExit(f'error: checkpoint {args.checkpoint!r} does not exist')

    try:
        cfg = load_run_config(args.config, args.cfg_options, args.launcher, args.work_dir)
    except ConfigError as exc:
        raise SystemExit(f'error: {exc}') from None
    cfg.load_from = args.checkpoint
    cfg.resume = False  # a test loads weights only
    if args.show or args.show_dir:
        cfg = trigger_visualization_hook(cfg, args)
    try:  # before the Runner builds anything
        prepare_for(cfg, phases=('test',), check_pretrained=False, partial_load=args.partial_load)
    except (DatasetCheckError, ModelCheckError, ValueError) as exc:
        raise SystemExit(f'error: {exc}') from None

    with distributed_session():
        runner = build_runner(cfg)
        if args.out is not None:
            runner.test_evaluator.metrics.append(DumpDetResults(out_file_path=args.out))
        metrics = runner.test()
        del runner  # its DDP wrapper holds the process group
    return metrics


if __name__ == '__main__':
    sys.exit(run_main(main))
