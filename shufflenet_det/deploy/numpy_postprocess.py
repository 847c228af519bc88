"""RetinaNet-style post-processing in numpy only (no torch): anchors, box decoding, class-aware NMS.

Used outside the graph for backends without NMS (ncnn). It mirrors mmdet 3.x ``AnchorHead.predict_by_feat`` for
sigmoid classifiers with ``DeltaXYWHBBoxCoder`` (the same semantics as ``detector.DetectorExportWrapper``), driven by
the ``postprocess`` dict stored next to an exported model (``detector.postprocess_meta``).

This file imports nothing but numpy and the standard library, so it can be copied to a board together with
``tools/deploy/ncnn_runner.py`` (which loads it by path and never imports torch).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np


def grid_anchors(base_anchors: np.ndarray, stride: Sequence[float], feat_h: int, feat_w: int) -> np.ndarray:
    """All anchors of one level, (H * W * A, 4), position-major then anchor (mmdet's ``grid_priors`` order)."""
    shift_x = np.arange(feat_w, dtype=np.float32) * np.float32(stride[0])
    shift_y = np.arange(feat_h, dtype=np.float32) * np.float32(stride[1])
    xx, yy = np.meshgrid(shift_x, shift_y)
    shifts = np.stack([xx, yy, xx, yy], axis=-1).reshape(-1, 1, 4)
    return (shifts + np.asarray(base_anchors, dtype=np.float32)[None]).reshape(-1, 4)


def decode_boxes(anchors: np.ndarray, deltas: np.ndarray, coder: dict[str, Any],
                 img_hw: tuple[int, int]) -> np.ndarray:
    """``DeltaXYWHBBoxCoder.decode``: (N, 4) anchors + deltas -> corner boxes clipped to ``img_hw``."""
    deltas = deltas * np.asarray(coder['stds'], np.float32) + np.asarray(coder['means'], np.float32)
    pxy = (anchors[:, :2] + anchors[:, 2:]) * 0.5
    pwh = anchors[:, 2:] - anchors[:, :2]
    max_ratio = abs(math.log(coder['wh_ratio_clip']))
    gxy = pxy + pwh * deltas[:, :2]
    gwh = pwh * np.exp(np.clip(deltas[:, 2:], -max_ratio, max_ratio))
    boxes = np.concatenate([gxy - gwh * 0.5, gxy + gwh * 0.5], axis=1)
    if coder.get('clip_border', True):
        h, w = img_hw
        boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, w)
        boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, h)
    return boxes.astype(np.float32)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy NMS; indices of kept boxes in decreasing score order (suppress when IoU > threshold)."""
    order = np.argsort(-scores, kind='stable')
    areas = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        lt = np.maximum(boxes[i, :2], boxes[rest, :2])
        rb = np.minimum(boxes[i, 2:], boxes[rest, 2:])
        inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
        union = areas[i] + areas[rest] - inter
        iou = np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def batched_nms(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Class-aware NMS through one NMS call with per-class coordinate offsets (``mmcv.ops.batched_nms``)."""
    if boxes.size == 0:
        return np.zeros((0,), dtype=np.int64)
    offsets = labels.astype(boxes.dtype) * (boxes.max() + 1)
    return nms(boxes + offsets[:, None], scores, iou_threshold)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function."""
    out = np.empty_like(x, dtype=np.float32)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    ex = np.exp(x[~pos])
    out[~pos] = ex / (1.0 + ex)
    return out


def postprocess(cls_scores: Sequence[np.ndarray], bbox_preds: Sequence[np.ndarray], meta: dict[str, Any],
                img_hw: tuple[int, int]) -> dict[str, np.ndarray]:
    """Detections of one image from the raw head outputs of every level.

    ``cls_scores[i]`` is (A*C, H_i, W_i) logits and ``bbox_preds[i]`` (A*4, H_i, W_i) deltas (a leading batch axis
    of size 1 is accepted); ``img_hw`` is the size of the network input. Returns ``boxes`` (N, 4) in input pixels,
    ``scores`` (N,) and ``labels`` (N,), sorted by decreasing score.
    """
    nc, cfg, coder = meta['num_classes'], meta['test_cfg'], meta['coder']
    all_boxes, all_scores, all_labels = [], [], []
    for level, (cls, reg) in enumerate(zip(cls_scores, bbox_preds)):
        cls = np.asarray(cls, dtype=np.float32)
        reg = np.asarray(reg, dtype=np.float32)
        if cls.ndim == 4:
            cls, reg = cls[0], reg[0]
        h, w = cls.shape[-2:]
        scores = sigmoid(cls.transpose(1, 2, 0).reshape(-1, nc))
        deltas = reg.transpose(1, 2, 0).reshape(-1, 4)
        flat = scores.reshape(-1)
        idx = np.nonzero(flat > cfg['score_thr'])[0]
        idx = idx[np.argsort(-flat[idx], kind='stable')]
        if cfg['nms_pre'] > 0:
            idx = idx[:cfg['nms_pre']]
        anchor_idx, labels = idx // nc, idx % nc
        anchors = grid_anchors(np.asarray(meta['base_anchors'][level]), meta['strides'][level], h, w)
        all_boxes.append(decode_boxes(anchors[anchor_idx], deltas[anchor_idx], coder, img_hw))
        all_scores.append(flat[idx])
        all_labels.append(labels)
    boxes = np.concatenate(all_boxes).reshape(-1, 4)
    scores = np.concatenate(all_scores)
    labels = np.concatenate(all_labels).astype(np.int64)
    if cfg.get('min_bbox_size', -1) >= 0:
        wh = boxes[:, 2:] - boxes[:, :2]
        valid = (wh > cfg['min_bbox_size']).all(axis=1)
        boxes, scores, labels = boxes[valid], scores[valid], labels[valid]
    keep = batched_nms(boxes, scores, labels, cfg['iou_threshold'])[:cfg['max_per_img']]
    return dict(boxes=boxes[keep], scores=scores[keep], labels=labels[keep])
