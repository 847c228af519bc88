"""ONNX ``NonMaxSuppression`` as a traceable PyTorch function.

:class:`ONNXNonMaxSuppression` runs a reference greedy NMS in eager mode (so the export wrapper can also be executed and
tested in PyTorch) and exports as the standard ONNX operator (opset >= 10), which ONNX Runtime and TensorRT implement
natively. The semantics follow the ONNX specification: per batch and class, boxes whose score is greater than
``score_threshold`` are visited in decreasing score order and a box is suppressed when its IoU with a kept box is
greater than ``iou_threshold`` (the same rule as ``mmcv.ops.nms``).
"""
from __future__ import annotations

import numpy as np
import torch


def greedy_nms(boxes: torch.Tensor, scores: torch.Tensor, max_per_class: int, iou_threshold: float,
               score_threshold: float) -> torch.Tensor:
    """Reference NMS: ``boxes`` (B, N, 4) corner format, ``scores`` (B, C, N); returns (M, 3) int64 indices.

    Computed in numpy (``runtime.postprocess.nms``), so that it costs nothing extra while the exporter traces.
    """
    from ..runtime.postprocess import nms
    b_np = boxes.detach().cpu().numpy().astype(np.float32)
    s_np = scores.detach().cpu().numpy().astype(np.float32)
    selected = []
    for b in range(b_np.shape[0]):
        for c in range(s_np.shape[1]):
            idx = np.nonzero(s_np[b, c] > score_threshold)[0]
            keep = idx[nms(b_np[b, idx], s_np[b, c, idx], iou_threshold)][:max_per_class]
            selected += [(b, c, int(k)) for k in keep]
    out = np.asarray(selected, dtype=np.int64).reshape(-1, 3)
    return torch.from_numpy(out).to(boxes.device)


class ONNXNonMaxSuppression(torch.autograd.Function):
    """``NonMaxSuppression(boxes, scores, max_output_boxes_per_class, iou_threshold, score_threshold)``."""

    @staticmethod
    def forward(ctx, boxes: torch.Tensor, scores: torch.Tensor, max_per_class: int, iou_threshold: float,
                score_threshold: float) -> torch.Tensor:  # noqa: D102
        return greedy_nms(boxes, scores, max_per_class, iou_threshold, score_threshold)

    @staticmethod
    def symbolic(g, boxes, scores, max_per_class: int, iou_threshold: float, score_threshold: float):  # noqa: D102
        max_t = g.op('Constant', value_t=torch.tensor([max_per_class], dtype=torch.int64))
        iou_t = g.op('Constant', value_t=torch.tensor([iou_threshold], dtype=torch.float32))
        score_t = g.op('Constant', value_t=torch.tensor([score_threshold], dtype=torch.float32))
        return g.op('NonMaxSuppression', boxes, scores, max_t, iou_t, score_t, center_point_box_i=0)


def onnx_nms(boxes: torch.Tensor, scores: torch.Tensor, max_per_class: int, iou_threshold: float,
             score_threshold: float) -> torch.Tensor:
    """Apply :class:`ONNXNonMaxSuppression` (see module docstring)."""
    return ONNXNonMaxSuppression.apply(boxes, scores, int(max_per_class), float(iou_threshold),
                                       float(score_threshold))
