"""The logic of ``tools/deploy/quantize.py``: its arguments checked (:func:`check_args`), the export, its report and
the config's datasets read and checked before anything is calibrated, then :func:`.gate.quantize_onnx`
(:func:`run`). User errors end through :func:`shufflenet_det.utils.cli.fail` (exit status 2), a model refused by the
accuracy gate with status 1; the tool's ``main`` parses the command line and calls :func:`run` under ``run_main``.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from ...utils.cli import fail
from .calibration import ValidationSet, calibration_tensors, dataset_split, sample_images
from .config import AccuracyGateError, QuantConfig, QuantizationError
from .detection import model_kind, raw_decoder_name
from .gate import quantize_onnx
from .graph import check_float_model, conv_nodes, resolve_exclusions


def check_args(args: argparse.Namespace) -> None:
    """Refuse (:func:`fail`, exit status 2) numbers out of range, options that do not apply and a missing config;
    ``args.percentile`` gets its default (99.999) when not given, ``--activation-type`` (uint8) and
    ``--sensitivity-images`` (8) theirs."""
    if getattr(args, 'activation_type', None) is None:
        args.activation_type = 'uint8'
    if getattr(args, 'sensitivity_images', None) is None:
        args.sensitivity_images = 8
    for name in ('num_calib',):
        if getattr(args, name) < 1:
            fail(f'--{name.replace("_", "-")} must be >= 1, got {getattr(args, name)}')
    for name in ('exclude_sensitive', 'sensitivity_images', 'bench_runs'):
        if getattr(args, name) < 0:
            fail(f'--{name.replace("_", "-")} must be >= 0, got {getattr(args, name)}')
    if args.threads < 1:
        fail(f'--threads must be >= 1, got {args.threads}')
    if args.eval_limit is not None and args.eval_limit < 1:
        fail(f'--eval-limit must be >= 1 (omit it to score every image), got {args.eval_limit}')
    if not args.max_map_drop >= 0:  # also refuses nan
        fail(f'--max-map-drop must be >= 0, got {args.max_map_drop}')
    if args.max_output_error is not None and not args.max_output_error >= 0:
        fail(f'--max-output-error must be >= 0, got {args.max_output_error}')
    if args.percentile is not None and not 0 < args.percentile <= 100:
        fail(f'--percentile must be in (0, 100], got {args.percentile}')
    if args.percentile is not None and args.method != 'percentile':
        fail(f'--percentile {args.percentile} only applies with --method percentile, not --method {args.method}: '
             'add --method percentile, or drop --percentile')
    if args.percentile is None:
        args.percentile = 99.999
    from ..cli import check_shape_arg
    check_shape_arg(args.shape)
    if args.exclude_sensitive and not args.sensitivity_images:
        fail(f'--exclude-sensitive {args.exclude_sensitive} needs the sensitivity report: --sensitivity-images must be '
             '>= 1')
    from ...utils.build import resolve_config_path
    if not os.path.isfile(resolve_config_path(args.config)):
        fail(f'--config {args.config!r} does not exist')


def default_out(model_path: Path) -> Path:
    """``<model>.int8.onnx`` next to ``<model>.onnx``."""
    stem = model_path.name[:-5] if model_path.name.endswith('.onnx') else model_path.name
    return model_path.with_name(stem + '.int8.onnx')


def preprocess_of(report: dict[str, Any], cfg: Any) -> dict[str, Any]:
    """How images become the model's input: the export's own record, else the config's data preprocessor."""
    pre = (report.get('postprocess') or {}).get('preprocess')
    if isinstance(pre, dict):
        return pre
    from types import SimpleNamespace

    from ...utils.build import build_model
    from ...utils.predict import preprocess_meta
    pre_cfg = (cfg.get('model') or {}).get('data_preprocessor')
    holder = SimpleNamespace(data_preprocessor=build_model(pre_cfg)) if pre_cfg else None
    return preprocess_meta(holder)  # type: ignore[arg-type]  # it reads the model's data_preprocessor only


def input_size(args: argparse.Namespace, report: dict[str, Any], cfg: Any, model_path: Path
               ) -> tuple[tuple[int, ...], bool]:
    """``(H, W)`` the model is calibrated and scored at (``--shape``, the static export's, else the config's
    ``image_size``) and whether the export is static."""
    static = None if report.get('dynamic') else tuple(int(v) for v in (report.get('input_shape') or [])[2:])
    if args.shape and static and tuple(args.shape) != static:
        fail(f'--shape {args.shape[0]} {args.shape[1]} does not match the static export {str(model_path)!r}, '
             f'whose input is {static[0]}x{static[1]}')
    if args.shape:
        return tuple(args.shape), bool(static)
    if static:
        return static, True
    if cfg.get('image_size') is not None:
        return tuple(int(v) for v in cfg.image_size)[::-1], False  # mmdet scales are (w, h)
    fail(f'{str(model_path)!r} is a dynamic export and the config has no image_size: give --shape H W')


def print_sensitive(report: dict[str, Any], top: int = 5) -> None:
    """The ``top`` quantized convolutions that add the most error, from a report's ``sensitivity``."""
    layers = [e for e in ((report.get('sensitivity') or {}).get('layers') or []) if e['quantized']][:top]
    if layers:
        print('[quantize] most sensitive convolutions (added error): '
              + ', '.join(f"{e['node']} {e['added_error']:.4f}" for e in layers))


def run(args: argparse.Namespace) -> int:
    """``tools/deploy/quantize.py`` on parsed arguments: 0 when the int8 model was written (or ``--list-nodes``
    printed); user errors and a refused model end through :func:`fail` (exit status 2, and 1 for the gate).
    ``--backend ncnn`` is :func:`.ncnn_tool.run_ncnn` (which reuses the checks here)."""
    check_args(args)
    if str(args.model).endswith('.param'):
        fail(f'model {args.model!r} is an ncnn .param: quantize it with --backend ncnn')
    if getattr(args, 'overwrite', False):
        fail('--overwrite applies to --backend ncnn only (the onnxruntime backend replaces its --out atomically)')
    from ..cli import check_output_path, read_export_report, refuse_input_overwrite
    model_path = Path(args.model)
    side = model_path.with_name(model_path.name + '.json')
    out = Path(args.out) if args.out else default_out(model_path)
    if out.suffix != '.onnx':
        fail(f'--out {str(out)!r} must end with .onnx')
    out_report = out.with_name(out.name + '.json')
    refuse_input_overwrite([('--out', out), ('the report (--out + .json)', out_report)],
                           [('the model', model_path), ('its report', side), ('--config', args.config)])
    check_output_path(out, '--out')
    report = read_export_report(model_path, side)
    if (report.get('quantization') or {}).get('format'):
        fail(f'{str(model_path)!r} is already quantized; quantize the float export')
    try:
        kind = model_kind(report)
    except ValueError as exc:
        fail(f'report {str(side)!r} of the model: {exc}; export again with tools/deploy/export_onnx.py')
    try:
        result = _quantize(args, model_path, side, out, report, kind)
    except AccuracyGateError as exc:
        print_sensitive(exc.report)
        fail(str(exc), code=1)
    except QuantizationError as exc:
        fail(str(exc))
    if result is None:  # --list-nodes
        return 0
    print_sensitive(result)
    lat = result.get('latency') or {}
    print(f"[quantize] wrote {out} and {out_report}: {result['quantization']['quantized_convs']} convolutions in "
          f"int8, {result['quantization']['float_convs']} in float"
          + (f", {lat['ratio']:.2f}x the float latency" if lat else ''))
    return 0


def read_datasets(args: argparse.Namespace, cfg: Any, report: dict[str, Any], side: Path
                  ) -> tuple[Path, Path, ValidationSet]:
    """The config's calibration split (annotations, image folder) and validation set, checked before any
    calibration (both backends): the validation annotations exist, the report's classes are the config's, and every
    image the scoring reads can be read."""
    from ..evaluate import check_report_classes, dataset_of
    from ..images import read_image
    ann, img_dir = dataset_split(cfg, args.calib_split)
    val_ann, val_dir, classes = dataset_of(cfg)
    if not val_ann.is_file():
        raise ValueError(f'validation annotations {str(val_ann)!r} not found')
    check_report_classes(report, classes, side, args.config)
    validation = ValidationSet(val_ann, val_dir, classes, args.eval_limit)
    for path in validation.paths():
        read_image(path, f'validation image (of {str(val_ann)!r})')
    return ann, img_dir, validation


def _quantize(args: argparse.Namespace, model_path: Path, side: Path, out: Path, report: dict[str, Any], kind: str
              ) -> dict[str, Any] | None:
    """The model, the config's data and the options checked against each other, then the quantization; None after
    ``--list-nodes``."""
    from ...runtime.postprocess import check_session
    from ...utils import load_config
    from ..evaluate import open_onnx
    measurable = kind == 'detector' or (kind == 'raw-detector' and raw_decoder_name(report) is not None)
    if not measurable and args.max_output_error is None and not args.list_nodes:
        fail(f'{str(model_path)!r} is a {kind} export: no mAP can be measured on its outputs, so the gate is the '
             'relative error of every output on the validation images; give --max-output-error E (for scale: '
             'the trained mini RetinaNet\'s backbone loses 0.16 / 0.34 / 0.41 on its three outputs at 256x256 '
             'while the detector loses no mAP)')
    # a corrupt model fails here, before any data is read; so does a report copied next to another model
    check_session(open_onnx(model_path), report, str(model_path), str(side))
    import onnx
    graph = onnx.load(str(model_path))
    check_float_model(graph, model_path)  # an int8 model whose report was replaced by the float one's
    if args.list_nodes:
        for c in conv_nodes(graph):
            print(f"{c['name']}  {c['kind']}{'  final' if c['final'] else ''}")
        return None
    op_types = tuple(args.op_types) if args.op_types else None
    # a typo in --exclude or --op-types fails in seconds, before the config and its data are read
    resolve_exclusions(QuantConfig(exclude=tuple(args.exclude), op_types=op_types).validate(), graph)
    cfg = load_config(args.config)
    size, static = input_size(args, report, cfg, model_path)
    batch = int(report['input_shape'][0]) if static else 1
    preprocess = preprocess_of(report, cfg)
    ann, img_dir, validation = read_datasets(args, cfg, report, side)
    paths = sample_images(ann, img_dir, args.num_calib * batch, args.calib_seed)
    calibration = calibration_tensors(paths, size, preprocess, batch)
    config = QuantConfig(method=args.method, activation_type=args.activation_type, per_channel=not args.per_tensor,
                         reduce_range=args.reduce_range, percentile=args.percentile,
                         quantize_postprocess=args.quantize_postprocess, exclude=tuple(args.exclude),
                         exclude_final_convs=args.exclude_final_convs, exclude_sensitive=args.exclude_sensitive,
                         op_types=op_types)
    print(f'[quantize] {kind} {model_path} at {size[0]}x{size[1]}: calibrating on {len(paths)} images of the '
          f'{args.calib_split} split ({ann})')
    return quantize_onnx(
        model_path, out, report, calibration, config, validation=validation, size=size, preprocess=preprocess,
        max_map_drop=args.max_map_drop, max_output_error=args.max_output_error,
        sensitivity_images=args.sensitivity_images, bench_runs=args.bench_runs, threads=args.threads,
        calibration_info=dict(split=args.calib_split, ann_file=str(ann), images=len(paths), seed=args.calib_seed,
                              size=list(size)))
