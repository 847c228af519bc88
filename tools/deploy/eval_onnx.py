"""COCO bbox mAP of an exported ONNX detector next to the PyTorch model's, on the same inputs.

Runs the ONNX model of tools/deploy/export_onnx.py (NMS in the graph) in ONNX Runtime on the config's validation set
(mmdet's keep-ratio test resize, the detector's normalisation), and - unless --no-torch - the PyTorch model from the
same config and checkpoint on exactly the same tensors, then scores both with pycocotools.

Example::

    python tools/deploy/eval_onnx.py work_dirs/deploy/retinanet_mini.onnx \\
        --config configs/mini/retinanet_shufflenetv2-1x_fpn_mini-coco.py \\
        --checkpoint work_dirs/retinanet_shufflenetv2-1x_fpn_mini-coco/epoch_12.pth
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from shufflenet_det.utils.cli import (
    add_config_arg,
    check_output_path,
    fail,
    refuse_input_overwrite,
    run_main,
    tool_parser,
)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = tool_parser(__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('model', help='the .onnx detector (its .onnx.json report from export_onnx.py next to it)')
    add_config_arg(p, 'the detector config (validation set, classes, preprocessing)', option=True, required=True)
    p.add_argument('--checkpoint', help='weights of the PyTorch reference (weights_only=True)')
    p.add_argument('--no-torch', action='store_true', help='evaluate the ONNX model only')
    p.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                   help='resize target (default: the export size, or the config\'s image_size when dynamic); a '
                        'static export only accepts its own size')
    p.add_argument('--limit', type=int, help='evaluate the first N images only (N >= 1; default: every image)')
    p.add_argument('--threads', type=int, default=0, help='ONNX Runtime threads (0: its default)')
    p.add_argument('--out', help='write the mAPs as JSON here')
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    from shufflenet_det.deploy.cli import check_shape_arg, read_export_report
    from shufflenet_det.deploy.evaluate import check_report_classes, dataset_of, evaluate_onnx, open_onnx
    from shufflenet_det.runtime.postprocess import check_session
    from shufflenet_det.utils import build_detector, load_config, write_json_atomic
    if args.limit is not None and args.limit < 1:
        fail(f'--limit must be >= 1 (omit it to evaluate every image), got {args.limit}')
    if args.threads < 0:
        fail(f'--threads must be >= 0 (0: ONNX Runtime\'s default), got {args.threads}')
    check_shape_arg(args.shape)
    model_path = Path(args.model)
    side = model_path.with_name(model_path.name + '.json')
    refuse_input_overwrite([('--out', args.out)], [('the model', model_path), ('its report', side),
                                                    ('--config', args.config), ('--checkpoint', args.checkpoint)])
    check_output_path(args.out, '--out')
    meta = read_export_report(model_path, side)
    if meta.get('what') != 'detector' or not meta.get('with_nms'):
        print(f'error: {model_path} is not a detector exported with NMS in the graph', file=sys.stderr)
        return 2
    static = None if meta.get('dynamic') else tuple(int(v) for v in (meta.get('input_shape') or [0, 0, 0, 0])[2:])
    if args.shape and static and tuple(args.shape) != static:
        fail(f'--shape {args.shape[0]} {args.shape[1]} does not match the static export {str(model_path)!r}, whose '
             f'input is {static[0]}x{static[1]}; omit --shape, or export with --dynamic')
    try:
        session = open_onnx(model_path, args.threads)  # a corrupt file fails here, before the dataset is read
        check_session(session, meta, str(model_path), str(side))  # a report copied next to another model
        cfg = load_config(args.config)
        ann_file, img_dir, classes = dataset_of(cfg)
        check_report_classes(meta, classes, side, args.config)  # before any work: labels would score other classes
        if not ann_file.is_file():
            raise ValueError(f'validation annotations {str(ann_file)!r} not found')
        if args.shape:
            size = tuple(args.shape)
        elif static:
            size = static
        elif cfg.get('image_size') is not None:
            size = tuple(int(v) for v in cfg.image_size)[::-1]
        else:
            raise ValueError(f'{str(model_path)!r} is a dynamic export and config {args.config!r} has no '
                             'image_size: give --shape H W')
        reference = None if args.no_torch else build_detector(cfg, args.checkpoint)  # the config parsed above
        pre = (meta.get('postprocess') or {}).get('preprocess')
        if not isinstance(pre, dict):
            raise ValueError(f'report {str(side)!r} has no postprocess.preprocess entry; export again with '
                             'tools/deploy/export_onnx.py')
        result = evaluate_onnx(model_path, ann_file, img_dir, classes, size, pre, reference, args.limit,
                               args.threads, session=session)
    except ValueError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    line = f"[eval] {result['num_images']} images at {size[0]}x{size[1]}: ONNX Runtime bbox mAP " \
           f"{result['onnx']['bbox_mAP']:.4f} (mAP_50 {result['onnx']['bbox_mAP_50']:.4f})"
    if 'torch' in result:
        line += f"; PyTorch {result['torch']['bbox_mAP']:.4f} (mAP_50 {result['torch']['bbox_mAP_50']:.4f}); " \
                f"|diff| {result['mAP_diff']:.4f}"
    print(line)
    if args.out:
        write_json_atomic(dict(model=str(model_path), config=args.config, checkpoint=args.checkpoint,
                               size=list(size), **result), args.out, 'evaluation results')
    return 0


if __name__ == '__main__':
    sys.exit(run_main(main))
