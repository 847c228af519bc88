"""Deploy a detector with mmdeploy 1.3.1 (torch 2.13 fixes applied) and run it with the exported backend: a command
line over shufflenet_det.deploy.mmdeploy_run.

Steps: mmdeploy's ``torch2onnx`` with its rewriters (post-processing + ONNX NonMaxSuppression in the graph, settings
from the deploy config's ``codebase_config.post_processing``) into a scratch folder; the same rewritten model run in
PyTorch on the same input as the parity reference; ONNX Runtime inference through mmdeploy's backend model
(``build_task_processor(...).build_backend_model``) on every image; files renamed into ``--work-dir`` only when the
parity check passes, with ``end2end.json`` (parity + detections) next to ``end2end.onnx``.

The backend's detections are also compared with mmdet's own ``predict`` (no rewriter) on the same input tensor
(``mmdet_parity`` in the report). For the lite and PicoDet detectors this check must pass too: their heads'
rewriters (``shufflenet_det/deploy/mmdeploy_lite.py``, ``mmdeploy_pico.py``) reproduce mmdet's post-processing
exactly; mmdeploy's generic rewriter of RetinaNet-like heads selects candidates differently (``pre_top_k`` by best
class), so there it is informational.

Deploy configs: configs/deploy/detection_onnxruntime_*.py run here. TensorRT configs export the ONNX and build the
engine when TensorRT is installed (a GPU machine); mmdeploy's own ncnn backend needs an mmdeploy source build - use
tools/deploy/export_ncnn.py (pnnx) for ncnn instead.

Example (the mini RetinaNet, after ``python tools/train.py configs/mini/retinanet_shufflenetv2-1x_fpn_mini-coco.py``)::

    python tools/deploy/mmdeploy_deploy.py configs/deploy/detection_onnxruntime_static-256x256.py \\
        configs/mini/retinanet_shufflenetv2-1x_fpn_mini-coco.py \\
        work_dirs/retinanet_shufflenetv2-1x_fpn_mini-coco/epoch_12.pth \\
        data/mini_coco/val2017/000000000001.png --work-dir work_dirs/mmdeploy_mini_ort
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from shufflenet_det.deploy.cli import add_tolerance_args
from shufflenet_det.utils.cli import add_cfg_options_arg, add_work_dir_arg, run_main, tool_parser

#: What makes the third positional argument a checkpoint (else it is the first image).
CHECKPOINT_SUFFIXES = ('.pth', '.pt', '.ckpt')


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = tool_parser(__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('deploy_cfg', help='mmdeploy deploy config (configs/deploy/...)')
    parser.add_argument('model_cfg', help='mmdet model config')
    parser.add_argument('checkpoint', nargs='?', default=None,
                        help='model checkpoint (weights_only=True); omit to deploy the randomly initialised model')
    parser.add_argument('images', nargs='+', help='image(s): the first is the export example, all are run')
    add_work_dir_arg(parser, 'output folder (end2end.onnx, end2end.json)', required=True)
    parser.add_argument('--device', default='cpu', help='device for the export and the backend (default cpu)')
    add_tolerance_args(parser, atol=None, rtol=None, box_atol=1e-2, score_atol=1e-4)
    add_cfg_options_arg(parser, 'model config overrides, e.g. model.test_cfg.score_thr=0.3', default={},
                        metavar='KEY=VALUE')
    args = parser.parse_args(argv)
    if args.checkpoint is not None and not args.checkpoint.endswith(CHECKPOINT_SUFFIXES):
        args.images.insert(0, args.checkpoint)
        args.checkpoint = None
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    from shufflenet_det.deploy.mmdeploy_run import DeployRequest, deploy
    return deploy(DeployRequest(deploy_cfg=args.deploy_cfg, model_cfg=args.model_cfg, checkpoint=args.checkpoint,
                                images=list(args.images), work_dir=args.work_dir, device=args.device,
                                box_atol=args.box_atol, score_atol=args.score_atol, cfg_options=args.cfg_options))


if __name__ == '__main__':
    sys.exit(run_main(main))
