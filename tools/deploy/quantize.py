"""Static int8 quantization (ONNX Runtime, QDQ) of an exported ONNX model, refused when it costs too much accuracy.

Calibrates on N images of the config's dataset (default: 64 of the train split), prepared as for the export
(keep-ratio resize, the model's normalisation, zero padding), writes int8 per-channel weights and uint8 activations
(QDQ), keeps the post-processing after the last convolutions in float, and optionally named layers, the final
or the most sensitive convolutions, then scores the float and the int8 model on the validation set - COCO bbox mAP for
detectors (tools/deploy/eval_onnx.py's path), the relative error of every output for backbones - and times both.
The int8 model and its report (<out>.json: mAPs, drop, latency, per-layer sensitivity) are written only when the mAP
drop is at most --max-map-drop (default 0.02); otherwise the tool exits with status 1 and writes nothing.

--backend ncnn quantizes an ncnn export of tools/deploy/export_ncnn.py (MODEL.param + .bin + .json) into ncnn's own
int8 format (the Convolution / ConvolutionDepthWise / InnerProduct layers, as ncnn2table + ncnn2int8 write them),
calibrated on the fp32 ncnn model with the same images, under the same gate: <out>.param / .bin / .json.

Examples::

    python tools/deploy/quantize.py work_dirs/deploy/retinanet_mini_320.onnx \\
        --config configs/mini/retinanet_shufflenetv2-1x_fpn_mini-coco.py \\
        --out work_dirs/deploy/retinanet_mini_320.int8.onnx
    python tools/deploy/quantize.py work_dirs/deploy/retinanet_mini_320.onnx --config ... --list-nodes
    python tools/deploy/quantize.py work_dirs/deploy/retinanet_mini_320.onnx --config ... \\
        --method entropy --exclude-final-convs --exclude-sensitive 3
    python tools/deploy/quantize.py work_dirs/deploy/retinanet_mini.param --backend ncnn \\
        --config configs/mini/retinanet_shufflenetv2-1x_fpn_mini-coco.py --out work_dirs/deploy/retinanet_mini.int8
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from shufflenet_det.utils.cli import add_config_arg, run_main, tool_parser


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = tool_parser(__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('model', help='the float .onnx of tools/deploy/export_onnx.py (its .onnx.json report next to it), '
                                 'or with --backend ncnn the .param of tools/deploy/export_ncnn.py (.bin, .json next '
                                 'to it)')
    p.add_argument('--backend', choices=['onnxruntime', 'ncnn'], default='onnxruntime',
                   help='onnxruntime: QDQ .onnx (default); ncnn: ncnn int8 .param/.bin of an ncnn export')
    add_config_arg(p, 'config of the model: its datasets (calibration and validation images) and preprocessing',
                   option=True, required=True)
    p.add_argument('--out', help='int8 .onnx to write (default: <model>.int8.onnx); its report is <out>.json. '
                                 'ncnn: the base name of <out>.param/.bin/.json (default <model>.int8)')
    p.add_argument('--overwrite', action='store_true',
                   help='ncnn: replace existing <out>.param/.bin/.json (refused otherwise)')
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
    q.add_argument('--activation-type', choices=['uint8', 'int8'],
                   help='activation type (default uint8: ONNX Runtime\'s u8s8 kernels on x86; onnxruntime only)')
    q.add_argument('--per-tensor', action='store_true', help='per-tensor weights (default: per-channel)')
    q.add_argument('--reduce-range', action='store_true', help='7-bit weights (x86 without VNNI saturation guard)')
    q.add_argument('--quantize-postprocess', action='store_true',
                   help='quantize the nodes after the last convolutions too (box decoding, top-k; default: float)')
    q.add_argument('--exclude', nargs='+', default=[], metavar='NODE',
                   help='node names kept in float (ncnn: layer names, see --list-nodes)')
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
    g.add_argument('--sensitivity-images', type=int,
                   help='calibration images of the per-layer sensitivity report (0: no report; default 8; '
                        'onnxruntime only)')
    g.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                   help='image size of a dynamic export (default: the config\'s image_size)')
    g.add_argument('--threads', type=int, default=2, help='ONNX Runtime / ncnn threads (default 2)')
    g.add_argument('--bench-runs', type=int, default=50,
                   help='timed runs per round of float vs int8 (5 rounds; 0: no timing; default 50)')
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args.backend == 'ncnn':
        from shufflenet_det.deploy.quantize.ncnn_tool import run_ncnn  # after parsing, as below
        return run_ncnn(args)
    from shufflenet_det.deploy.quantize.tool import run  # after parsing: --help and usage errors stay fast
    return run(args)


if __name__ == '__main__':
    sys.exit(run_main(main))
