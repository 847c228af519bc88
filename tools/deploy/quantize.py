"""Static int8 quantization (ONNX Runtime, QDQ) of an exported ONNX model, refused when it costs too much accuracy.

Calibrates on N images of the config's dataset (default: 64 of the train split), prepared as for the export
(keep-ratio resize, the model's normalisation, zero padding), writes int8 per-channel weights and uint8 activations
(QDQ), keeps the post-processing after the last convolutions in float, and optionally named layers, the final
or the most sensitive convolutions, then scores the float and the int8 model on the validation set - COCO bbox mAP for
detectors (tools/deploy/eval_onnx.py's path), the relative error of every output for backbones - and times both.
The int8 model and its report (<out>.json: mAPs, drop, latency, per-layer sensitivity) are written only when the mAP
drop is at most --max-map-drop (default 0.02); otherwise the tool exits with status 1 and writes nothing.

Examples::

    python tools/deploy/quantize.py work_dirs/deploy/retinanet_mini_320.onnx \\
        --config configs/mini/retinanet_shufflenetv2-1x_fpn_mini-coco.py \\
        --out work_dirs/deploy/retinanet_mini_320.int8.onnx
    python tools/deploy/quantize.py work_dirs/deploy/retinanet_mini_320.onnx --config ... --list-nodes
    python tools/deploy/quantize.py work_dirs/deploy/retinanet_mini_320.onnx --config ... \\
        --method entropy --exclude-final-convs --exclude-sensitive 3
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from shufflenet_det.utils.cli import fail, run_main  # noqa: E402


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('model', help='the float .onnx of tools/deploy/export_onnx.py (its .onnx.json report next to it)')
    p.add_argument('--config', required=True,
                   help='config of the model: its datasets (calibration and validation images) and preprocessing')
    p.add_argument('--out', help='int8 .onnx to write (default: <model>.int8.onnx); its report is <out>.json')
    p.add_argument('--list-nodes', action='store_true',
                   help='print the convolutions of the model (names for --exclude, kind, final) and exit')
    cal = p.add_argument_group('calibration')
    cal.add_argument('--calib-split', choices=['train', 'val', 'test'], default='train',
                     help='dataset split of the config to calibrate on (default: train)')
    cal.add_argument('--num-calib', type=int, default=64, help='calibration images, >= 1 (default 64)')
    cal.add_argument('--calib-seed', type=int, default=0, help='seed of the calibration image sample')
    cal.add_argument('--method', choices=['minmax', 'entropy', 'percentile'], default='minmax',
                     help='activation range calibration (default minmax)')
    cal.add_argument('--percentile', type=float,
                     help='percentile of --method percentile, in (0, 100] (default 99.999); only with that method')
    q = p.add_argument_group('quantization')
    q.add_argument('--activation-type', choices=['uint8', 'int8'], default='uint8',
                   help='activation type (default uint8: ONNX Runtime\'s u8s8 kernels on x86)')
    q.add_argument('--per-tensor', action='store_true', help='per-tensor weights (default: per-channel)')
    q.add_argument('--reduce-range', action='store_true', help='7-bit weights (x86 without VNNI saturation guard)')
    q.add_argument('--quantize-postprocess', action='store_true',
                   help='quantize the nodes after the last convolutions too (box decoding, top-k; default: float)')
    q.add_argument('--exclude', nargs='+', default=[], metavar='NODE', help='node names kept in float')
    q.add_argument('--exclude-final-convs', action='store_true',
                   help='keep the final convolutions (no convolution after them: the heads\' outputs) in float')
    q.add_argument('--exclude-sensitive', type=int, default=0, metavar='K',
                   help='keep the K convolutions that add the most error (sensitivity report) in float')
    q.add_argument('--op-types', nargs='+', metavar='OP',
                   help='quantize only these operator types (default: all ONNX Runtime can)')
    g = p.add_argument_group('accuracy gate and report')
    g.add_argument('--max-map-drop', type=float, default=0.02,
                   help='refuse the model when the bbox mAP drops by more than this (default 0.02)')
    g.add_argument('--max-output-error', type=float,
                   help='refuse the model when an output\'s ||int8 - float|| / ||float|| on the validation images '
                        'exceeds this; required when no mAP can be measured (backbones, raw outputs without a '
                        'decoder), otherwise not checked unless given')
    g.add_argument('--eval-limit', type=int, help='score the first N validation images only (default: all)')
    g.add_argument('--sensitivity-images', type=int, default=8,
                   help='calibration images of the per-layer sensitivity report (0: no report; default 8)')
    g.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                   help='image size of a dynamic export (default: the config\'s image_size)')
    g.add_argument('--threads', type=int, default=2, help='ONNX Runtime threads (default 2)')
    g.add_argument('--bench-runs', type=int, default=50,
                   help='timed runs per round of float vs int8 (5 rounds; 0: no timing; default 50)')
    return p.parse_args(argv)


def _check_args(args: argparse.Namespace) -> None:
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
    from shufflenet_det.deploy.cli import check_shape_arg
    check_shape_arg(args.shape)
    if args.exclude_sensitive and not args.sensitivity_images:
        fail(f'--exclude-sensitive {args.exclude_sensitive} needs the sensitivity report: --sensitivity-images must be '
             '>= 1')
    from shufflenet_det.utils.build import resolve_config_path
    if not os.path.isfile(resolve_config_path(args.config)):
        fail(f'--config {args.config!r} does not exist')


def _preprocess(report: dict, cfg) -> dict:
    """How images become the model's input: the export's own record, else the config's data preprocessor."""
    pre = (report.get('postprocess') or {}).get('preprocess')
    if isinstance(pre, dict):
        return pre
    from types import SimpleNamespace

    from mmdet.registry import MODELS

    import shufflenet_det  # noqa: F401  (registers the project's modules)
    from shufflenet_det.utils.predict import preprocess_meta
    pre_cfg = (cfg.get('model') or {}).get('data_preprocessor')
    return preprocess_meta(SimpleNamespace(data_preprocessor=MODELS.build(pre_cfg)) if pre_cfg else None)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    _check_args(args)
    from shufflenet_det.deploy.cli import check_output_path, read_export_report, refuse_input_overwrite
    model_path = Path(args.model)
    side = model_path.with_name(model_path.name + '.json')
    out = Path(args.out) if args.out else model_path.with_name(
        (model_path.name[:-5] if model_path.name.endswith('.onnx') else model_path.name) + '.int8.onnx')
    if out.suffix != '.onnx':
        fail(f'--out {str(out)!r} must end with .onnx')
    out_report = out.with_name(out.name + '.json')
    refuse_input_overwrite([('--out', out), ('the report (--out + .json)', out_report)],
                           [('the model', model_path), ('its report', side), ('--config', args.config)])
    check_output_path(out, '--out')
    report = read_export_report(model_path, side)
    if (report.get('quantization') or {}).get('format'):
        fail(f'{str(model_path)!r} is already quantized; quantize the float export')
    from shufflenet_det.deploy import quantize as qz
    from shufflenet_det.deploy.evaluate import check_report_classes, dataset_of, open_onnx
    from shufflenet_det.deploy.images import read_image
    from shufflenet_det.runtime.postprocess import check_session
    from shufflenet_det.utils import load_config
    try:
        kind = qz.model_kind(report)
    except ValueError as exc:
        fail(f'report {str(side)!r} of the model: {exc}; export again with tools/deploy/export_onnx.py')
    try:
        measurable = kind == 'detector' or (kind == 'raw-detector' and qz.raw_decoder_name(report) is not None)
        if not measurable and args.max_output_error is None and not args.list_nodes:
            fail(f'{str(model_path)!r} is a {kind} export: no mAP can be measured on its outputs, so the gate is the '
                 'relative error of every output on the validation images; give --max-output-error E (for scale: '
                 'the trained mini RetinaNet\'s backbone loses 0.16 / 0.34 / 0.41 on its three outputs at 256x256 '
                 'while the detector loses no mAP)')
        # a corrupt model fails here, before any data is read; so does a report copied next to another model
        check_session(open_onnx(model_path), report, str(model_path), str(side))
        import onnx
        graph = onnx.load(str(model_path))
        qz.check_float_model(graph, model_path)  # an int8 model whose report was replaced by the float one's
        if args.list_nodes:
            for c in qz.conv_nodes(graph):
                print(f"{c['name']}  {c['kind']}{'  final' if c['final'] else ''}")
            return 0
        qz.resolve_exclusions(qz.QuantConfig(exclude=tuple(args.exclude), op_types=tuple(args.op_types)
                                             if args.op_types else None).validate(), graph)  # a typo fails in seconds
        cfg = load_config(args.config)
        static = None if report.get('dynamic') else tuple(int(v) for v in (report.get('input_shape') or [])[2:])
        if args.shape and static and tuple(args.shape) != static:
            fail(f'--shape {args.shape[0]} {args.shape[1]} does not match the static export {str(model_path)!r}, '
                 f'whose input is {static[0]}x{static[1]}')
        if args.shape:
            size = tuple(args.shape)
        elif static:
            size = static
        elif cfg.get('image_size') is not None:
            size = tuple(int(v) for v in cfg.image_size)[::-1]  # mmdet scales are (w, h)
        else:
            fail(f'{str(model_path)!r} is a dynamic export and the config has no image_size: give --shape H W')
        batch = int(report['input_shape'][0]) if static else 1
        preprocess = _preprocess(report, cfg)
        ann, img_dir = qz.dataset_split(cfg, args.calib_split)
        val_ann, val_dir, classes = dataset_of(cfg)
        if not val_ann.is_file():
            raise ValueError(f'validation annotations {str(val_ann)!r} not found')
        check_report_classes(report, classes, side, args.config)
        validation = qz.ValidationSet(val_ann, val_dir, classes, args.eval_limit)
        for path in validation.paths():  # every image the scoring reads, before the calibration and quantization
            read_image(path, f'validation image (of {str(val_ann)!r})')
        paths = qz.sample_images(ann, img_dir, args.num_calib * batch, args.calib_seed)
        calibration = qz.calibration_tensors(paths, size, preprocess, batch)
        config = qz.QuantConfig(method=args.method, activation_type=args.activation_type,
                                per_channel=not args.per_tensor, reduce_range=args.reduce_range,
                                percentile=args.percentile, quantize_postprocess=args.quantize_postprocess,
                                exclude=tuple(args.exclude), exclude_final_convs=args.exclude_final_convs,
                                exclude_sensitive=args.exclude_sensitive,
                                op_types=tuple(args.op_types) if args.op_types else None)
        print(f'[quantize] {kind} {model_path} at {size[0]}x{size[1]}: calibrating on {len(paths)} images of the '
              f'{args.calib_split} split ({ann})')
        result = qz.quantize_onnx(
            model_path, out, report, calibration, config, validation=validation, size=size, preprocess=preprocess,
            max_map_drop=args.max_map_drop, max_output_error=args.max_output_error,
            sensitivity_images=args.sensitivity_images, bench_runs=args.bench_runs, threads=args.threads,
            calibration_info=dict(split=args.calib_split, ann_file=str(ann), images=len(paths), seed=args.calib_seed,
                                  size=list(size)))
    except qz.AccuracyGateError as exc:
        _print_sensitive(exc.report)
        fail(str(exc), code=1)
    except qz.QuantizationError as exc:
        fail(str(exc))
    _print_sensitive(result)
    lat = result.get('latency') or {}
    print(f"[quantize] wrote {out} and {out_report}: {result['quantization']['quantized_convs']} convolutions in "
          f"int8, {result['quantization']['float_convs']} in float"
          + (f", {lat['ratio']:.2f}x the float latency" if lat else ''))
    return 0


def _print_sensitive(report: dict, top: int = 5) -> None:
    layers = [e for e in ((report.get('sensitivity') or {}).get('layers') or []) if e['quantized']][:top]
    if layers:
        print('[quantize] most sensitive convolutions (added error): '
              + ', '.join(f"{e['node']} {e['added_error']:.4f}" for e in layers))


if __name__ == '__main__':
    sys.exit(run_main(main))
