"""ONNX ``NonMaxSuppression`` as a traceable PyTorch function.

:class:`ONNXNonMaxSuppression` runs a reference greedy NMS in eager mode (so the export wrapper can also be executed and
tested in PyTorch) and exports as the standard ONNX operator (opset >= 10), which ONNX Runtime and TensorRT implement
natively. The semantics follow the ONNX specification: per batch and class, boxes whose score is greater than
``score_threshold`` are visited in decreasing score order and a box is suppressed when its IoU with a kept box is
greater than ``iou_threshold`` (the same rule as ``mmcv.ops.nms``).
"""
from __future__ import annotations

import torch


def _iou_one_to_many(box: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    area = (box[2] - box[0]).clamp(min=0) * (box[3] - box[1]).clamp(min=0)
    areas = (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)
    lt = torch.maximum(box[:2], boxes[:, :2])
    rb = torch.minimum(box[2:], boxes[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=1)
    union = area + areas - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


def greedy_nms(boxes: torch.Tensor, scores: torch.Tensor, max_per_class: int, iou_threshold: float,
               score_threshold: float) -> torch.Tensor:
    """Reference NMS: ``boxes`` (B, N, 4) corner format, ``scores`` (B, C, N); returns (M, 3) int64 indices."""
    selected = []
    for b in range(boxes.shape[0]):
        for c in range(scores.shape[1]):
            s = scores[b, c]
            idx = torch.nonzero(s > score_threshold).flatten()
            idx = idx[torch.sort(s[idx], descending=True, stable=True).indices]
            keep: list[int] = []
            while idx.numel() and len(keep) < max_per_class:
                cur = int(idx[0])
                keep.append(cur)
                rest = idx[1:]
                if rest.numel() == 0:
                    break
                iou = _iou_one_to_many(boxes[b, cur], boxes[b, rest])
                idx = rest[iou <= iou_threshold]
            selected += [(b, c, k) for k in keep]
    if not selected:
        return torch.zeros((0, 3), dtype=torch.int64, device=boxes.device)
    return torch.tensor(selected, dtype=torch.int64, device=boxes.device)


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
