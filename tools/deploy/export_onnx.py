"""Export a ShuffleNet backbone or a whole RetinaNet-like detector to ONNX, checked against PyTorch.

The detector graph contains the box decoding and NMS (ONNX NonMaxSuppression) and outputs
``num_dets (B,), boxes (B, 100, 4), scores (B, 100), labels (B, 100)`` for a normalised input ``input (B, 3, H, W)``
(see shufflenet_det/deploy/detector.py). BatchNorm is folded. Every export is compared with PyTorch - backbone
features within --atol / --rtol, detector boxes/scores/labels with mmdet's own post-processing (the rules of
shufflenet_det/deploy/parity.py) - and the result is printed and stored next to the model as ``<out>.json``
(e.g. ``model.onnx.json``); a failed export or check leaves no file behind.

Examples::

    python tools/deploy/export_onnx.py --backbone ShuffleNetV2 --backbone-args '{"out_indices": [1, 2, 3]}' \\
        --out work_dirs/deploy/shufflenetv2_backbone.onnx --shape 224 224 --simplify onnxslim
    python tools/deploy/export_onnx.py --config configs/mini/retinanet_shufflenetv2-1x_fpn_mini-coco.py \\
        --checkpoint work_dirs/mini/epoch_12.pth --out work_dirs/deploy/retinanet_mini.onnx --dynamic
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from shufflenet_det.deploy.cli import add_model_args, add_tolerance_args, resolve
from shufflenet_det.deploy.parity import RTOL
from shufflenet_det.utils.cli import check_output_path, fail, refuse_input_overwrite, run_main, tool_parser


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = tool_parser(__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(parser)
    parser.add_argument('--out', required=True, help='output .onnx file (report: <out>.json, e.g. model.onnx.json)')
    parser.add_argument('--opset', type=int, default=17,
                        help='ONNX opset, 11..20 (default 17); anything else is refused before the export')
    parser.add_argument('--batch', type=int, default=1, help='batch size of the export example (backbone)')
    parser.add_argument('--simplify', choices=['onnxslim', 'onnxsim'], help='simplify the graph with this tool')
    parser.add_argument('--no-graph-opt', action='store_true',
                        help='skip the exact deploy rewrites (concat + channel shuffle -> one interleave; the Megvii '
                             'layout\'s de-interleave -> two strided slices; tensors between convolutions zero-padded '
                             'to 16 channels)')
    parser.add_argument('--no-nms', action='store_true',
                        help='detector: stop at the raw head tensors (NMS outside the graph)')
    add_tolerance_args(parser, atol=1e-4, rtol=RTOL, box_atol=1e-2, score_atol=1e-4)
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    from shufflenet_det.deploy.export_common import ExportError
    from shufflenet_det.deploy.images import check_images
    from shufflenet_det.deploy.onnx_export import MAX_OPSET, MIN_OPSET, export_backbone_onnx, export_detector_onnx
    if not MIN_OPSET <= args.opset <= MAX_OPSET:
        fail(f'--opset {args.opset} is not supported: give {MIN_OPSET}..{MAX_OPSET} (default 17; below {MIN_OPSET} '
             'ONNX lacks the NonMaxSuppression / TopK / Resize forms the graphs use, above '
             f'{MAX_OPSET} the exporter has no support)')
    if args.batch < 1:
        fail(f'--batch must be >= 1, got {args.batch}')
    if not args.out.endswith('.onnx'):
        fail(f'--out {args.out!r} must end with .onnx')
    report_path = args.out + '.json'
    refuse_input_overwrite([('--out', args.out), ('the report (--out + .json)', report_path)],
                           [('--checkpoint', args.checkpoint), ('--config', args.config)]
                           + [('--images', im) for im in args.images or []])
    check_output_path(args.out, '--out')
    what, model, (h, w), cfg = resolve(args)
    try:
        if what == 'backbone':
            report = export_backbone_onnx(model, args.out, (args.batch, 3, h, w), opset=args.opset,
                                          dynamic=args.dynamic, fold_bn=not args.no_fold_bn,
                                          simplify=args.simplify, atol=args.atol, rtol=args.rtol,
                                          graph_opt=not args.no_graph_opt)
        else:
            images, sources = check_images(model, (h, w), args.images, args.num_images, cfg=cfg)
            print(f'[export] check images: {sources}')
            report = export_detector_onnx(model, args.out, images, opset=args.opset, dynamic=args.dynamic,
                                          fold_bn=not args.no_fold_bn, with_nms=not args.no_nms,
                                          simplify=args.simplify, box_atol=args.box_atol,
                                          score_atol=args.score_atol, raw_atol=args.atol, raw_rtol=args.rtol,
                                          graph_opt=not args.no_graph_opt)
    except (ValueError, ExportError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 1
    print(f'[export] wrote {args.out} and {args.out}.json '
          f'(parity {"PASSED" if report["parity"]["passed"] else "FAILED"})')
    return 0


if __name__ == '__main__':
    sys.exit(run_main(main))
