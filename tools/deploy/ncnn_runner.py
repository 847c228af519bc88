"""Run (and time) an ncnn model exported by tools/deploy/export_ncnn.py - numpy + the ncnn wheel, no torch.

The command line of ``python -m shufflenet_det.runtime ncnn`` (:mod:`shufflenet_det.runtime.cli`); on a board copy
the folder ``shufflenet_det/runtime/`` alone and run ``python -m runtime ncnn ...`` (docs/deployment.md).

Examples::

    python tools/deploy/ncnn_runner.py work_dirs/deploy/retinanet_mini.param --image demo.ppm --out-json dets.json
    python tools/deploy/ncnn_runner.py work_dirs/deploy/shufflenetv2_backbone.param --bench 100 --threads 4
"""
import sys

from shufflenet_det.runtime.cli import ncnn_main as main
from shufflenet_det.runtime.errors import run_main

__all__ = ['main', 'run_main']

if __name__ == '__main__':
    sys.exit(run_main(main))
