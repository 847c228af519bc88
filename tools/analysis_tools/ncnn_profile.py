"""Where an ncnn model spends its time, layer by layer: ``python -m shufflenet_det.runtime ncnn-profile`` (torch-free;
on a board, ``python -m runtime ncnn-profile`` with the runtime folder copied alone).

Each layer is timed as a network of its own on the blobs the whole network gives it, in rounds interleaved with the
whole network; the layer times add up to the network's within a few per cent. Printed: convolutions (multiply-adds,
rate), data movement and the rest, per layer type, the slowest layers; with --peer, the ratio of the two networks'
times and that ratio with only the model's convolutions left.

Examples::

    python tools/deploy/export_ncnn.py --config configs/lite/lite-m_shufflenetv2-1x_300e_coco-320.py \\
        --out work_dirs/deploy/lite-m_320
    python tools/analysis_tools/ncnn_profile.py work_dirs/deploy/lite-m_320.param work_dirs/deploy/lite-m_320.bin \\
        --shape 3 320 320 --peer work_dirs/peers/nanodet-plus-m_320.param work_dirs/peers/nanodet-plus-m_320.bin \\
        --threads 1 --runs 300 --rounds 30 --out work_dirs/bench/ncnn_profile_lite-m_vs_nanodet_320_t1.json
"""
import sys

from shufflenet_det.runtime.cli import profile_main as main
from shufflenet_det.runtime.errors import run_main

__all__ = ['main', 'run_main']

if __name__ == '__main__':
    sys.exit(run_main(main))
