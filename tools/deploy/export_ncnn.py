"""Export a ShuffleNet backbone or a RetinaNet-like detector to ncnn (.param/.bin) through pnnx, checked.

For ARM phones and boards. pnnx turns the ShuffleNet channel split into ncnn ``Slice`` and the view/transpose channel
shuffle into ``ShuffleChannel``. Detectors are exported WITHOUT NMS: the ncnn graph outputs the raw head tensors
(``out0..out{L-1}`` classification logits (A*C, H_i, W_i) per level, then ``out{L}..out{2L-1}`` box deltas) and
``tools/deploy/ncnn_runner.py`` does the anchor decoding + NMS in numpy, reading the post-processing parameters from
the ``<out>.json`` side-car written here. The check compares ncnn with PyTorch at half-precision tolerance (raw
tensors) and, for detectors, the runner's post-processing of ncnn's outputs with mmdet's detections. A failed export
or check leaves no file behind.

Examples::

    python tools/deploy/export_ncnn.py --backbone ShuffleNetV2 --backbone-args '{"out_indices": [3]}' \\
        --out work_dirs/deploy/shufflenetv2_backbone --shape 224 224
    python tools/deploy/export_ncnn.py --config configs/mini/retinanet_shufflenetv2-1x_fpn_mini-coco.py \\
        --checkpoint work_dirs/mini/epoch_12.pth --out work_dirs/deploy/retinanet_mini
    python tools/deploy/ncnn_runner.py work_dirs/deploy/retinanet_mini.param --image demo.png
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

from shufflenet_det.deploy.cli import add_model_args, add_tolerance_args, resolve
from shufflenet_det.utils.cli import check_output_path, fail, refuse_input_overwrite, run_main, tool_parser


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = tool_parser(__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(parser)
    parser.add_argument('--out', required=True,
                        help='output base name, not a folder: writes <out>.param, <out>.bin and <out>.json (a '
                             'trailing .param is ok), e.g. --out work_dirs/deploy/model; an existing folder (or a '
                             'name ending in /) is refused rather than guessing a file name in or beside it')
    parser.add_argument('--fp16-weights', action='store_true',
                        help='store the weights as fp16 in the .bin (half the size; default fp32, ncnn still '
                             'computes in fp16 where the CPU supports it)')
    parser.add_argument('--no-graph-opt', action='store_true',
                        help='leave out the deploy rewrite of the ncnn files (channel counts that ncnn cannot '
                             'pack padded with zero channels; exact, see docs/deployment.md)')
    add_tolerance_args(parser, atol=5e-3, rtol=5e-3, box_atol=1.0, score_atol=5e-3,
                       title='parity tolerances (half precision)')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    from shufflenet_det.deploy.export_common import ExportError
    from shufflenet_det.deploy.images import check_images
    from shufflenet_det.deploy.ncnn_export import export_backbone_ncnn, export_detector_ncnn, ncnn_paths
    if os.path.isdir(args.out) or args.out.endswith(('/', os.sep)):
        fail(f'--out {args.out!r} is a folder, but --out is the base name of the three files <out>.param, <out>.bin '
             f'and <out>.json; give a name inside it, e.g. --out {os.path.join(args.out, "model")}')
    param, bin_path, js = ncnn_paths(args.out)
    refuse_input_overwrite([('--out (.param)', param), ('--out (.bin)', bin_path), ('--out (.json)', js)],
                           [('--checkpoint', args.checkpoint), ('--config', args.config)]
                           + [('--images', im) for im in args.images or []])
    check_output_path(param, '--out')
    what, model, (h, w), cfg = resolve(args)
    try:
        if what == 'backbone':
            report = export_backbone_ncnn(model, args.out, (1, 3, h, w), fold_bn=not args.no_fold_bn,
                                          dynamic=args.dynamic, fp16_weights=args.fp16_weights, atol=args.atol,
                                          rtol=args.rtol, graph_opt=not args.no_graph_opt)
        else:
            images, sources = check_images(model, (h, w), args.images, args.num_images, cfg=cfg)
            print(f'[export] check images: {sources}')
            report = export_detector_ncnn(model, args.out, images, fold_bn=not args.no_fold_bn,
                                          dynamic=args.dynamic, fp16_weights=args.fp16_weights, atol=args.atol,
                                          rtol=args.rtol, box_atol=args.box_atol, score_atol=args.score_atol,
                                          graph_opt=not args.no_graph_opt)
    except (ValueError, ExportError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 1
    print(f'[export] wrote {param}, {bin_path}, {js} (layers: {report["layer_types"]}; deploy rewrites: '
          f'{report["graph_rewrites"]})')
    return 0


if __name__ == '__main__':
    sys.exit(run_main(main))
