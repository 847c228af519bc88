"""Argument handling shared by ``tools/deploy/export_onnx.py``, ``tools/deploy/export_ncnn.py`` and the benchmark."""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any, Iterable

from torch import nn

from ..utils.cli import fail
from ..utils.io import same_file


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """``--config`` / ``--backbone`` / ``--backbone-args`` / ``--checkpoint`` / ``--what`` / ``--shape``."""
    src = parser.add_argument_group('model')
    src.add_argument('--config', help='mmdet config of a detector (its backbone with --what backbone)')
    src.add_argument('--backbone', metavar='TYPE',
                     help='registered backbone type instead of a config, e.g. ShuffleNetV2')
    src.add_argument('--backbone-args', default='{}', metavar='JSON',
                     help='backbone keyword arguments as JSON, e.g. \'{"widen_factor": 1.0, "out_indices": [1,2,3]}\'')
    src.add_argument('--checkpoint', help='weights (read with weights_only=True, loaded strictly): a detector '
                     'checkpoint, or a backbone one for --what backbone; random init when omitted')
    src.add_argument('--what', choices=['detector', 'backbone'],
                     help='what to export (default: detector with --config, backbone with --backbone)')
    src.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                     help='input height and width (default: the config\'s image_size, else 320 for a detector '
                          'and 224 for a backbone)')
    src.add_argument('--no-fold-bn', action='store_true', help='keep BatchNorm layers (default: fold them)')
    src.add_argument('--dynamic', action='store_true', help='dynamic input size (and batch for ONNX)')
    src.add_argument('--images', nargs='+', help='check images (default: the config\'s validation images when on '
                     'disk, else generated pictures)')
    src.add_argument('--num-images', type=int, default=2, help='how many check images without --images')
    from mmengine.config import DictAction
    src.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                     help='override config settings, e.g. model.test_cfg.score_thr=0.3')


def parse_backbone_args(text: str) -> dict[str, Any]:
    """JSON object -> dict, or a CLI error naming --backbone-args."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        fail(f'--backbone-args is not valid JSON ({exc}): {text!r}')
    if not isinstance(value, dict):
        fail(f'--backbone-args must be a JSON object, got {text!r}')
    return value


def backbone_from_args(backbone_type: str | None, backbone_args: dict[str, Any], cfg: Any = None,
                       checkpoint: str | None = None) -> nn.Module:
    """The backbone ``backbone_type`` or ``cfg.model.backbone``, updated with ``backbone_args``, in eval mode.

    Weights come from ``checkpoint`` (a backbone checkpoint, or a detector one whose ``backbone.`` keys are used,
    loaded strictly) or the backbone's own random initialisation; a config's ``init_cfg`` (``Pretrained``) is never
    used. ValueError for an unknown type, wrong arguments or a checkpoint that does not fit.
    """
    from ..utils.build import build_backbone
    base = dict(cfg.model.backbone) if cfg is not None else dict(type=backbone_type)
    bb_cfg = {**base, **backbone_args, 'init_cfg': None}
    return build_backbone(bb_cfg, checkpoint=checkpoint, init=checkpoint is None).eval()


def resolve(args: argparse.Namespace) -> tuple[str, nn.Module, tuple[int, int], Any]:
    """``(what, model, (H, W), cfg)`` from the parsed model arguments; the config is parsed once.

    The model is in eval mode, its weights from ``--checkpoint`` (loaded strictly) or its own initialisation; a
    config's ``Pretrained`` init is never used. Errors in the config, backbone or checkpoint end the tool with a
    message naming them.
    """
    from ..utils.build import build_detector, load_config
    if bool(args.config) == bool(args.backbone):
        fail('give exactly one of --config and --backbone')
    what = args.what or ('detector' if args.config else 'backbone')
    if what == 'detector' and not args.config:
        fail('--what detector needs --config')
    if args.num_images < 1:
        fail(f'--num-images must be >= 1, got {args.num_images}')
    if args.shape and min(args.shape) <= 0:
        fail(f'--shape must be positive, got {tuple(args.shape)}')
    bb_args = parse_backbone_args(args.backbone_args)
    try:
        cfg = load_config(args.config, args.cfg_options) if args.config else None
        if what == 'detector':
            model = build_detector(cfg, args.checkpoint)
        else:
            model = backbone_from_args(args.backbone, bb_args, cfg, args.checkpoint)
    except ValueError as exc:  # ConfigError, CheckpointError, an unknown backbone type or argument
        fail(str(exc))
    if args.shape:
        shape = tuple(args.shape)
    elif cfg is not None and cfg.get('image_size') is not None:
        shape = tuple(int(v) for v in cfg.image_size)[::-1]  # mmdet scales are (w, h)
    else:
        shape = (320, 320) if what == 'detector' else (224, 224)
    if min(shape) <= 0:
        fail(f'--shape must be positive, got {shape}')
    return what, model, shape, cfg  # type: ignore[return-value]


def refuse_input_overwrite(outputs: Iterable[tuple[str, Any]], inputs: Iterable[tuple[str, Any]]) -> None:
    """End the tool when an output path is one of its input files (``(option, path)`` pairs; None entries skipped).

    An export written over its own checkpoint, or a report written over the model it describes, would destroy the
    input the run reads (or has just read); the message names both options.
    """
    ins = [(name, Path(p)) for name, p in inputs if p]
    for out_name, out in outputs:
        if not out:
            continue
        for in_name, path in ins:
            if same_file(out, path):
                fail(f'{out_name} {str(out)!r} is the same file as {in_name} {str(path)!r}: refusing to overwrite '
                     'an input; choose another output path')


def _check_creatable(path: Any, option: str, folder: Path, what: str) -> None:
    """End the tool unless ``folder`` exists as a writable folder or can be created below its nearest existing
    ancestor, which must be one (``what``: how the message calls the thing to create)."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        fail(f'{option} {str(path)!r}: cannot create {what}, {str(folder)!r} is a file')
    if not os.access(folder, os.W_OK | os.X_OK):
        fail(f'{option} {str(path)!r}: folder {str(folder)!r} is not writable')


def check_output_path(path: Any, option: str) -> None:
    """End the tool unless ``path`` can be written: not a folder, and its folder exists and is writable or can be
    created (nothing is created here). Run before any long work, so that a bad output path fails in seconds."""
    if not path:
        return
    target = Path(path).expanduser().absolute()
    if target.is_dir():
        fail(f'{option} {str(path)!r} is a folder; give a file path')
    _check_creatable(path, option, target.parent, 'its folder')


def check_output_dir(path: Any, option: str) -> None:
    """End the tool unless the folder ``path`` can be used for outputs: a folder already, or creatable below its
    nearest existing ancestor, which must be a writable folder (nothing is created here). Run before any long work
    (a dataset generated, a model built) so that a work dir below a file fails in seconds and leaves nothing."""
    if not path:
        return
    target = Path(path).expanduser().absolute()
    if target.exists() and not target.is_dir():
        fail(f'{option} {str(path)!r} is a file, not a folder')
    _check_creatable(path, option, target, 'it')


def read_export_report(model_path: Path, side: Path) -> dict[str, Any]:
    """The export report ``side`` of the ONNX model ``model_path`` (written next to it by ``export_onnx.py``), or the
    tool ends naming the missing or unreadable file."""
    if not model_path.is_file() or not side.is_file():
        fail(f'{model_path} and its report {side} must exist (export with tools/deploy/export_onnx.py)')
    try:
        report = json.loads(side.read_text())
        if not isinstance(report, dict):
            raise ValueError('not a JSON object')
    except (OSError, ValueError) as exc:
        fail(f'report {str(side)!r} of the model is not a readable export report ({exc}); export again with '
             'tools/deploy/export_onnx.py')
    return report
