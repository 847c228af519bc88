"""Argument handling of the deploy tools (``tools/deploy/export_onnx.py``, ``export_ncnn.py``, ``eval_onnx.py``,
``quantize.py``, ``mmdeploy_deploy.py``) and the benchmark: the model options, input sizes, export reports and parity
tolerances.

The options and output checks every tool shares (``--cfg-options``, ``--work-dir``, :func:`check_output_path`,
:func:`check_output_dir`, :func:`refuse_input_overwrite`) are :mod:`shufflenet_det.utils.cli`; the checks are
re-exported here for the deploy tools.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Sequence

from torch import nn

from ..utils.cli import (
    add_cfg_options_arg,
    add_config_arg,
    check_output_dir,
    check_output_path,
    fail,
    refuse_input_overwrite,
)

__all__ = ['MAX_INPUT_SIDE', 'add_model_args', 'add_tolerance_args', 'backbone_from_args', 'check_input_size',
           'check_output_dir', 'check_output_path', 'check_shape_arg', 'input_size_divisor', 'parse_backbone_args',
           'load_report_json', 'read_export_report', 'refuse_input_overwrite', 'resolve']

#: The largest input side the tools accept: a typo such as ``--shape 100000`` would otherwise try to allocate tens
#: of GB (a 4096 x 4096 float input is 200 MB; detectors here run at 320-640).
MAX_INPUT_SIDE = 4096


def check_shape_arg(shape: Sequence[int] | None, option: str = '--shape') -> None:
    """End the tool unless every side of ``shape`` (the value of ``option``; None: not given) is in
    ``1..MAX_INPUT_SIDE``."""
    if not shape:
        return
    text = ' '.join(str(v) for v in shape)
    if min(shape) <= 0:
        fail(f'{option} must be positive, got {text}')
    if max(shape) > MAX_INPUT_SIDE:
        fail(f'{option} {text} is too large: at most {MAX_INPUT_SIDE} pixels a side')


def input_size_divisor(detector: nn.Module) -> tuple[int, str] | None:
    """``(d, why)`` when every input side of ``detector`` must be a multiple of ``d``; None when any size works.

    The lite detectors' GhostPAN upsamples every level by exactly 2 to meet the next finer one, so the input must be
    divisible by the coarsest backbone stride (what their data preprocessor pads to). mmdet's FPN resizes to the
    finer level's size and takes any input.
    """
    from ..models.necks import GhostPAN
    if not isinstance(getattr(detector, 'neck', None), GhostPAN):
        return None
    strides = [int(s) for s in getattr(detector.backbone, 'out_strides', None) or ()]
    divisor = max(strides) if strides else int(getattr(detector.data_preprocessor, 'pad_size_divisor', 1) or 1)
    return divisor, (f'the {type(detector.neck).__name__} neck upsamples each level by 2 to meet the next, from the '
                     f'coarsest backbone stride {divisor}')


def check_input_size(detector: nn.Module, shape: Sequence[int], source: str = '--shape') -> None:
    """End the tool, naming ``source`` (where ``shape`` came from), when ``shape`` (H, W) is not an input size the
    detector can run at (:func:`input_size_divisor`); run it before any export or count."""
    rule = input_size_divisor(detector)
    if rule is None:
        return
    divisor, why = rule
    h, w = (int(shape[0]), int(shape[-1]))
    if h % divisor or w % divisor:
        up = [-(-v // divisor) * divisor for v in (h, w)]
        fail(f'{source} {h} {w} does not fit {type(detector).__name__}: {why}, so H and W must be multiples of '
             f'{divisor} (e.g. {up[0]} {up[1]})')


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """``--config`` / ``--backbone`` / ``--backbone-args`` / ``--checkpoint`` / ``--what`` / ``--shape``."""
    src = parser.add_argument_group('model')
    add_config_arg(src, 'mmdet config of a detector (its backbone with --what backbone)', option=True)
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
                          f'and 224 for a backbone); at most {MAX_INPUT_SIDE}, and multiples of the coarsest '
                          'backbone stride (32) for the lite detectors (GhostPAN neck)')
    src.add_argument('--no-fold-bn', action='store_true', help='keep BatchNorm layers (default: fold them)')
    src.add_argument('--dynamic', action='store_true', help='dynamic input size (and batch for ONNX)')
    src.add_argument('--images', nargs='+', help='check images (default: the config\'s validation images when on '
                     'disk, else generated pictures)')
    src.add_argument('--num-images', type=int, default=2, help='how many check images without --images')
    add_cfg_options_arg(src, 'override config settings, e.g. model.test_cfg.score_thr=0.3', default={})


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
    check_shape_arg(args.shape)
    bb_args = parse_backbone_args(args.backbone_args)
    try:
        cfg = load_config(args.config, args.cfg_options) if args.config else None
        if what == 'detector':
            model = build_detector(cfg, args.checkpoint)
        else:
            model = backbone_from_args(args.backbone, bb_args, cfg, args.checkpoint)
    except ValueError as exc:  # ConfigError, CheckpointError, an unknown backbone type or argument
        fail(str(exc))
    source = '--shape'
    if args.shape:
        shape = tuple(args.shape)
    elif cfg is not None and cfg.get('image_size') is not None:
        shape = tuple(int(v) for v in cfg.image_size)[::-1]  # mmdet scales are (w, h)
        source = f'the image_size of config {args.config!r} (H W)'
    else:
        shape = (320, 320) if what == 'detector' else (224, 224)
    check_shape_arg(shape, source)
    if what == 'detector':
        check_input_size(model, shape, source)
    return what, model, shape, cfg


def read_export_report(model_path: Path, side: Path) -> dict[str, Any]:
    """The export report ``side`` of the ONNX model ``model_path`` (written next to it by ``export_onnx.py``), or the
    tool ends naming the missing or unreadable file."""
    if not model_path.is_file() or not side.is_file():
        fail(f'{model_path} and its report {side} must exist (export with tools/deploy/export_onnx.py)')
    return load_report_json(side, 'tools/deploy/export_onnx.py')


def load_report_json(side: Path, exporter: str) -> dict[str, Any]:
    """The JSON object in the export report ``side``, or the tool ends naming the file and ``exporter`` (the tool
    that writes it) when it cannot be read or is not an object."""
    try:
        report = json.loads(side.read_text())
        if not isinstance(report, dict):
            raise ValueError('not a JSON object')
    except (OSError, ValueError) as exc:
        fail(f'report {str(side)!r} of the model is not a readable export report ({exc}); export again with '
             f'{exporter}')
    return report


def _tolerance(text: str) -> float:
    """argparse type of a parity tolerance: a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'{text!r} is not a number') from None
    if not (value >= 0 and value != float('inf')):
        raise argparse.ArgumentTypeError(f'{text!r} must be a finite number >= 0')
    return value


def add_tolerance_args(parser: argparse.ArgumentParser, atol: float | None, rtol: float | None, box_atol: float,
                       score_atol: float, title: str = 'parity tolerances') -> None:
    """The parity options of an export tool (the rules of :mod:`.parity`); ``atol`` / ``rtol`` None: no tensor
    check in this tool."""
    tol = parser.add_argument_group(title, 'tensors: |diff| <= atol * max(1, max|ref|) + rtol * |ref| per element; '
                                           'detections: one-to-one same-label partners within box / score '
                                           'tolerance * max(1, raw head output magnitude), unmatched only at the '
                                           'score_thr, max_per_img and NMS boundaries')
    if atol is not None:
        tol.add_argument('--atol', type=_tolerance, default=atol,
                         help=f'tensors: absolute term, relative to max|ref| above 1 (default {atol:g})')
    if rtol is not None:
        tol.add_argument('--rtol', type=_tolerance, default=rtol,
                         help=f'tensors: relative term of each element (default {rtol:g})')
    tol.add_argument('--box-atol', type=_tolerance, default=box_atol,
                     help=f'detector boxes: pixels (default {box_atol:g})')
    tol.add_argument('--score-atol', type=_tolerance, default=score_atol,
                     help=f'detector scores (default {score_atol:g})')
