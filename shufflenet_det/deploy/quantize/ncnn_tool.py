"""``tools/deploy/quantize.py --backend ncnn``: the ncnn export of ``tools/deploy/export_ncnn.py`` (``.param`` +
``.bin`` + ``.json``) to an ncnn int8 model under the ONNX Runtime path's accuracy gate (:func:`.ncnn_gate
.quantize_ncnn`), with the same calibration images (:mod:`.calibration`) and the same checks before any work: options
that only apply to ONNX Runtime, files that are missing or not an ncnn export, layer names, outputs. User errors end
through :func:`fail` (exit status 2), a refused model with status 1 and nothing written.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ...runtime.ncnn_file import NcnnFormatError, read_ncnn
from ...utils.cli import fail
from .calibration import calibration_tensors, sample_images
from .config import AccuracyGateError, QuantConfig, QuantizationError
from .detection import model_kind, raw_decoder_name
from .ncnn_gate import ncnn_files, quantize_ncnn
from .ncnn_int8 import quantizable_layers, resolve_layers

#: ``(option, attribute, value when not given)`` of the options that only the onnxruntime backend has.
ORT_ONLY = (('--activation-type', 'activation_type', None), ('--per-tensor', 'per_tensor', False),
            ('--reduce-range', 'reduce_range', False), ('--quantize-postprocess', 'quantize_postprocess', False),
            ('--op-types', 'op_types', None), ('--exclude-sensitive', 'exclude_sensitive', 0),
            ('--sensitivity-images', 'sensitivity_images', None))


def check_ncnn_args(args: argparse.Namespace) -> None:
    """Refuse the onnxruntime-only options, then the shared checks of :func:`.tool.check_args`."""
    from .tool import check_args
    for option, attr, unset in ORT_ONLY:
        if getattr(args, attr, unset) not in (unset,):
            fail(f'{option} applies to --backend onnxruntime only; ncnn int8 has symmetric int8 activations, '
                 'per-channel int8 weights and no sensitivity report (its options: --method, --percentile, '
                 '--exclude, --exclude-final-convs)')
    args.sensitivity_images = 0
    check_args(args)


def read_ncnn_export(model: str) -> tuple[Path, Path, Path, dict[str, Any]]:
    """``(param, bin, json, report)`` of the ncnn export ``model`` (``name`` or ``name.param``), or the tool ends
    naming the missing or wrong file."""
    if model.endswith(('.onnx', '.bin', '.json')):
        fail(f'model {model!r}: --backend ncnn takes the .param of tools/deploy/export_ncnn.py (or its base name)')
    param, bin_path, side = ncnn_files(model)
    for path, what in ((param, '.param'), (bin_path, '.bin (weights)'), (side, '.json report')):
        if not path.is_file():
            fail(f'model {model!r}: its {what} {str(path)!r} does not exist (export with tools/deploy/export_ncnn.py)')
    from ..cli import load_report_json
    report = load_report_json(side, 'tools/deploy/export_ncnn.py')
    if report.get('format') != 'ncnn' or not report.get('input_blob') or not report.get('output_blobs'):
        fail(f'{str(side)!r} is not the report of an ncnn export (format {report.get("format")!r}); export with '
             'tools/deploy/export_ncnn.py')
    if report.get('quantization'):
        fail(f'{str(param)!r} is already quantized; quantize the fp32 export')
    return param, bin_path, side, report


def default_out(param: Path) -> Path:
    """``<model>.int8`` (``.param`` / ``.bin`` / ``.json``) next to the export."""
    return param.with_name(param.name[:-len('.param')] + '.int8')


def run_ncnn(args: argparse.Namespace) -> int:
    """``tools/deploy/quantize.py --backend ncnn`` on parsed arguments."""
    from ..cli import check_output_path, refuse_input_overwrite
    check_ncnn_args(args)
    param, bin_path, side, report = read_ncnn_export(args.model)
    out = Path(args.out) if args.out else default_out(param)
    if out.suffix in ('.bin', '.json', '.onnx'):
        fail(f'--out {str(out)!r}: with --backend ncnn, --out is the base name of <out>.param, <out>.bin and '
             '<out>.json (a trailing .param is ok)')
    outs = ncnn_files(out)
    refuse_input_overwrite([('--out (.param)', outs[0]), ('--out (.bin)', outs[1]), ('--out (.json)', outs[2])],
                           [('the model', param), ('its weights', bin_path), ('its report', side),
                            ('--config', args.config)])
    for path in outs:
        check_output_path(path, '--out', overwrite=args.overwrite)
    try:
        kind = model_kind(report)
        model = read_ncnn(param, bin_path)
    except (ValueError, NcnnFormatError) as exc:
        fail(f'model {args.model!r}: {exc}')
    if args.list_nodes:
        for lay in quantizable_layers(model):
            print(f"{lay['name']}  {lay['type']} {lay['kind']}{'  final' if lay['final'] else ''}")
        return 0
    config = QuantConfig(method=args.method, percentile=args.percentile, exclude=tuple(args.exclude),
                         exclude_final_convs=args.exclude_final_convs)
    try:
        resolve_layers(config.validate(), model)  # a typo in --exclude fails before any data is read
    except ValueError as exc:
        fail(str(exc))
    measurable = kind == 'raw-detector' and raw_decoder_name(report) is not None
    if not measurable and args.max_output_error is None:
        fail(f'{str(param)!r} is a {kind} export: no mAP can be measured on its outputs, so the gate is the relative '
             'error of every output on the validation images; give --max-output-error E')
    try:
        result = _calibrate_and_quantize(args, param, side, outs[0], report, config)
    except AccuracyGateError as exc:
        fail(str(exc), code=1)
    except QuantizationError as exc:
        fail(str(exc))
    q = result['quantization']
    lat = result.get('latency') or {}
    print(f'[quantize] wrote {outs[0]}, {outs[1]} and {outs[2]}: {q["quantized_convs"]} layers in int8, '
          f'{q["float_convs"]} in float' + (f", {lat['ratio']:.2f}x the fp32 latency on this CPU" if lat else ''))
    return 0


def _calibrate_and_quantize(args: argparse.Namespace, param: Path, side: Path, out: Path, report: dict[str, Any],
                            config: QuantConfig) -> dict[str, Any]:
    """The config's data read and checked, the calibration tensors prepared, then :func:`quantize_ncnn`."""
    from ...utils import load_config
    from .tool import input_size, preprocess_of, read_datasets
    cfg = load_config(args.config)
    size, _static = input_size(args, report, cfg, param)
    preprocess = preprocess_of(report, cfg)
    ann, img_dir, validation = read_datasets(args, cfg, report, side)
    paths = sample_images(ann, img_dir, args.num_calib, args.calib_seed)
    calibration = calibration_tensors(paths, size, preprocess, 1)
    print(f'[quantize] ncnn {model_kind(report)} {param} at {size[0]}x{size[1]}: calibrating on {len(paths)} images '
          f'of the {args.calib_split} split ({ann})')
    return quantize_ncnn(param, out, report, calibration, config, validation=validation, size=size,
                         preprocess=preprocess, max_map_drop=args.max_map_drop, max_output_error=args.max_output_error,
                         bench_runs=args.bench_runs, threads=args.threads, calibration_info=dict(
                             split=args.calib_split, ann_file=str(ann), images=len(paths), seed=args.calib_seed,
                             size=list(size)))
