"""In-graph NMS: ONNX ``NonMaxSuppression`` as a traceable PyTorch function, and mmdet's final selection around it.

:class:`ONNXNonMaxSuppression` runs a reference greedy NMS in eager mode (so the export wrapper can also be executed and
tested in PyTorch) and exports as the standard ONNX operator (opset >= 10), which ONNX Runtime and TensorRT implement
natively. The semantics follow the ONNX specification: per batch and class, boxes whose score is greater than
``score_threshold`` are visited in decreasing score order and a box is suppressed when its IoU with a kept box is
greater than ``iou_threshold`` (the same rule as ``mmcv.ops.nms``). :func:`select_detections` is mmdet's
``_bbox_post_process`` around it (size filter, class-aware NMS, the ``max_per_img`` best), shared by every deploy form
with NMS in the graph.
"""
from __future__ import annotations

from typing import Any

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
    def forward(ctx: Any, boxes: torch.Tensor, scores: torch.Tensor, max_per_class: int, iou_threshold: float,
                score_threshold: float) -> torch.Tensor:  # noqa: D102
        return greedy_nms(boxes, scores, max_per_class, iou_threshold, score_threshold)

    @staticmethod
    def symbolic(g: Any, boxes: Any, scores: Any, max_per_class: int, iou_threshold: float,
                 score_threshold: float) -> Any:  # noqa: D102
        max_t = g.op('Constant', value_t=torch.tensor([max_per_class], dtype=torch.int64))
        iou_t = g.op('Constant', value_t=torch.tensor([iou_threshold], dtype=torch.float32))
        score_t = g.op('Constant', value_t=torch.tensor([score_threshold], dtype=torch.float32))
        return g.op('NonMaxSuppression', boxes, scores, max_t, iou_t, score_t, center_point_box_i=0)


def onnx_nms(boxes: torch.Tensor, scores: torch.Tensor, max_per_class: int, iou_threshold: float,
             score_threshold: float) -> torch.Tensor:
    """Apply :class:`ONNXNonMaxSuppression` (see module docstring)."""
    out: torch.Tensor = ONNXNonMaxSuppression.apply(boxes, scores, int(max_per_class), float(iou_threshold),
                                                    float(score_threshold))
    return out


def select_detections(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, *, score_thr: float,
                      iou_thr: float, max_per_img: int, min_bbox_size: float,
                      bounded: bool = True) -> tuple[torch.Tensor, ...]:
    """mmdet's ``_bbox_post_process`` in graph form: candidates -> ``num_dets, boxes, scores, labels``.

    ``boxes`` (B, K, 4), ``scores`` (B, K) and ``labels`` (B, K) are the decoded candidates of every level. Boxes not
    larger than ``min_bbox_size`` (when >= 0) get score 0, class-aware NMS runs as one ONNX ``NonMaxSuppression``
    (mmcv's class-offset trick; only scores above ``score_thr`` take part), and the ``max_per_img`` best survivors
    are returned sorted by score, padded (label -1, score 0). ``bounded``: K is a fixed number of candidates
    (``nms_pre`` per level), so at most K survive.
    """
    if min_bbox_size >= 0:
        wh = boxes[..., 2:] - boxes[..., :2]
        valid = (wh > min_bbox_size).all(dim=-1)
        scores = torch.where(valid, scores, torch.zeros_like(scores))
    # class-aware NMS through one NMS call: shift each class to its own region (mmcv.ops.batched_nms)
    max_coord = boxes.flatten(1).max(dim=1).values
    offsets = labels.to(boxes.dtype) * (max_coord[:, None] + 1)
    nms_boxes = boxes + offsets[..., None]
    num_cand = boxes.shape[1] if bounded else 1 << 20
    sel = onnx_nms(nms_boxes, scores.unsqueeze(1), num_cand, iou_thr, score_thr)
    ones = torch.ones_like(sel[:, 0], dtype=scores.dtype)
    kept = torch.zeros_like(scores).index_put((sel[:, 0], sel[:, 2]), ones)
    ranked = torch.where(kept > 0, scores, torch.full_like(scores, -1.0))
    top = min(max_per_img, boxes.shape[1]) if bounded else max_per_img
    out_scores, order = ranked.topk(top, dim=1)
    num_dets = kept.sum(dim=1).clamp(max=top).long()
    valid = out_scores >= 0
    out_boxes = torch.gather(boxes, 1, order.unsqueeze(-1).expand(-1, -1, 4))
    out_boxes = torch.where(valid.unsqueeze(-1), out_boxes, torch.zeros_like(out_boxes))
    out_labels = torch.where(valid, torch.gather(labels, 1, order), torch.full_like(order, -1))
    out_scores = torch.where(valid, out_scores, torch.zeros_like(out_scores))
    return num_dets, out_boxes, out_scores, out_labels
