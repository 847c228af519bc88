"""Train a detector: mmdet's ``tools/train.py`` with the ShuffleNet family registered and early data checks.

Examples::

    python tools/train.py configs/retinanet_shufflenetv2.py
    python tools/train.py configs/mini/retinanet_shufflenetv2-1x_fpn_mini-coco.py --work-dir work_dirs/mini
    python tools/train.py CONFIG --resume                 # resume from work_dir/last_checkpoint
    python tools/train.py CONFIG --resume work_dirs/x/epoch_3.pth
    bash tools/dist_train.sh CONFIG 8                    # 8 processes via torchrun (see the script)

Before the Runner builds anything the data, the pretrained weights, the backbone/neck channels and the checkpoint the
run starts from (``load_from`` / ``--resume``) are checked (:func:`shufflenet_det.apps.launch.prepare_for`); a problem
ends the tool with ``error: <message>`` and exit status 2 (``--debug`` shows the traceback).
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

from shufflenet_det.utils.cli import run_main, tool_parser


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = tool_parser('Train a detector (MMDetection 3.x + shufflenet_det)', config='train config file path',
                         work_dir='the dir to save logs and models (default: work_dirs/<config name>)',
                         cfg_options='override config settings, key=value pairs, e.g. train_cfg.max_epochs=2 '
                                     '"optim_wrapper.optimizer.lr=0.005"; lists as key="[a,b]"',
                         launcher='job launcher (tools/dist_train.sh sets pytorch)')
    parser.add_argument('--amp', action='store_true',
                        help='enable automatic mixed precision training (needs a CUDA, NPU, MLU or MUSA device: '
                             "mmengine's AmpOptimWrapper; refused on a CPU-only machine)")
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the lr by (total batch size / auto_scale_lr.base_batch_size)')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from this checkpoint; without a path, resume from the latest checkpoint in '
                             'the work dir (its last_checkpoint file). It must be a checkpoint of this model')
    parser.add_argument('--partial-load', action='store_true',
                        help='let the config\'s load_from checkpoint, and the checkpoints of Pretrained init_cfgs, '
                             'fit the model only partly (another class count, width ...): the matching weights are '
                             'loaded, the others keep their initialisation and the mismatch is logged as a warning. '
                             'Without it a mismatch is an error')
    return parser.parse_args(argv)


def amp_device_available() -> bool:
    """Whether mmengine's ``AmpOptimWrapper`` can run here (the devices it accepts)."""
    from mmengine import device
    checks = ('is_cuda_available', 'is_npu_available', 'is_mlu_available', 'is_musa_available')
    return any(getattr(device, name, lambda: False)() for name in checks)


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    if args.amp and not amp_device_available():
        raise SystemExit('error: --amp needs a CUDA (or NPU / MLU / MUSA) device, and none is available on this '
                         "machine (mmengine's AmpOptimWrapper only runs there); train without --amp")
    import shufflenet_det  # noqa: F401  (compat fixes + registers the backbones and hooks)
    from shufflenet_det.apps.launch import (
        ModelCheckError,
        PretrainedWeightsMissing,
        build_runner,
        distributed_session,
        load_run_config,
        prepare_for,
        start_tool,
    )
    from shufflenet_det.datasets import DatasetCheckError
    from shufflenet_det.utils.build import ConfigError

    start_tool(args.local_rank)

    try:
        cfg = load_run_config(args.config, args.cfg_options, args.launcher, args.work_dir)
    except ConfigError as exc:
        raise SystemExit(f'error: {exc}') from None
    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.loss_scale = 'dynamic'
    if args.auto_scale_lr:
        if 'base_batch_size' not in cfg.get('auto_scale_lr', {}):
            raise SystemExit(f'error: --auto-scale-lr needs auto_scale_lr.base_batch_size in {args.config}')
        cfg.auto_scale_lr.enable = True
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        if not os.path.isfile(args.resume):
            raise SystemExit(f'error: --resume checkpoint {args.resume!r} does not exist')
        cfg.resume, cfg.load_from = True, args.resume

    try:  # before the Runner builds anything
        prepare_for(cfg, phases=('train', 'val') if cfg.get('val_cfg') else ('train',), check_pretrained=True,
                    partial_load=args.partial_load)
    except (DatasetCheckError, PretrainedWeightsMissing, ModelCheckError, ValueError) as exc:
        raise SystemExit(f'error: {exc}') from None

    with distributed_session():
        runner = build_runner(cfg)
        runner.train()
        del runner  # its DDP wrapper holds the process group


if __name__ == '__main__':
    sys.exit(run_main(main))
