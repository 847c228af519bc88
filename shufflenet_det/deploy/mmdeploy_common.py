"""What mmdeploy's rewriters of the project's heads share (:mod:`.mmdeploy_lite`, :mod:`.mmdeploy_pico`); imports
mmdeploy.

Both heads decode points into candidates in graph form (their deploy forms' candidate stages) and end alike:
:func:`head_test_settings` reads the test settings and the input size the way mmdeploy's detector rewriter passes
them, :func:`class_columns` places each (point, class) candidate's score in its own class column, and
:func:`mmdeploy_detections` runs mmdeploy's ``multiclass_nms`` on the ``(B, K, C)`` scores (per-class ONNX
``NonMaxSuppression`` with the head's ``score_thr`` and ``nms.iou_threshold``; TensorRT's batched NMS plugin on that
backend), which is exactly mmdet's class-aware NMS of the candidates, and returns mmdeploy's outputs ``dets``
(B, D, 5) and ``labels`` (B, D): the ``max_per_img`` best, sorted by score (``keep_top_k`` is applied as a slice after
sorting, so a picture with fewer detections than ``max_per_img`` does not make ONNX Runtime's TopK fail; rows with
score 0 are padding, which mmdeploy's backend model drops).
"""
from __future__ import annotations

from typing import Any, Optional

import torch
from mmdeploy.mmcv.ops import multiclass_nms
from torch import Tensor


def head_test_settings(head: Any, cfg: Optional[Any],
                       batch_img_metas: Optional[list]) -> tuple[Any, int, Tensor]:
    """``(cfg, nms_pre, img_hw)``: the head's ``test_cfg`` (unless ``cfg``), its ``nms_pre`` (ValueError unless > 0:
    the graph's per-level top-k has a fixed size) and the input's (H, W) as a tensor from
    ``batch_img_metas[0]['img_shape']`` (ints for a static export, a tensor for a dynamic one: mmdeploy's detector
    rewriter sets it)."""
    name = type(head).__name__
    cfg = head.test_cfg if cfg is None else cfg
    nms_pre = int(cfg.get('nms_pre', -1))
    if nms_pre <= 0:
        raise ValueError(f'{name} export needs test_cfg.nms_pre > 0, got {nms_pre}')
    if batch_img_metas is None:
        raise ValueError(f'{name} export needs batch_img_metas with img_shape')
    img_shape = batch_img_metas[0]['img_shape']
    img_hw = img_shape[:2] if isinstance(img_shape, Tensor) else torch.tensor([float(v) for v in img_shape[:2]])
    return cfg, nms_pre, img_hw


def class_columns(scores: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """``(B, K, C)``: each candidate's score (``scores`` (B, K)) in the column of its label (``labels`` (B, K)),
    0 elsewhere."""
    classes = torch.arange(int(num_classes), device=labels.device)
    return (labels.unsqueeze(-1) == classes).to(scores.dtype) * scores.unsqueeze(-1)


def mmdeploy_detections(boxes: Tensor, class_scores: Tensor, cfg: Any,
                        with_nms: bool = True) -> tuple[Tensor, Tensor]:
    """``(dets (B, D, 5), labels (B, D))`` of candidates ``boxes`` (B, K, 4) with ``class_scores`` (B, K, C): boxes
    not larger than ``cfg.min_bbox_size`` (when >= 0) scored 0, then mmdeploy's ``multiclass_nms`` and the
    ``max_per_img`` best (module docstring). Without NMS: ``(boxes, class_scores)`` after the size filter."""
    min_size = float(cfg.get('min_bbox_size', -1))
    if min_size >= 0:
        wh = boxes[..., 2:] - boxes[..., :2]
        valid = (wh > min_size).all(dim=-1, keepdim=True)
        class_scores = torch.where(valid, class_scores, torch.zeros_like(class_scores))
    if not with_nms:
        return boxes, class_scores
    nms_cfg = cfg.get('nms', {}) or {}
    dets, det_labels = multiclass_nms(
        boxes, class_scores, max_output_boxes_per_class=int(boxes.shape[1]),
        iou_threshold=float(nms_cfg.get('iou_threshold', 0.5)), score_threshold=float(cfg.get('score_thr', 0.0)),
        pre_top_k=-1, keep_top_k=-1, nms_type=nms_cfg.get('type', 'nms'))
    keep = int(cfg.get('max_per_img', 100))
    return dets[:, :keep], det_labels[:, :keep]
