"""Detector post-processing in numpy only (no torch): priors, box decoding, class-aware NMS.

Used outside the graph for backends without NMS (ncnn, raw ONNX exports), driven by the ``postprocess`` dict stored
next to an exported model (``detector.postprocess_meta``); :func:`decode_outputs` picks the decoder it names:

* :func:`postprocess` - RetinaNet-like heads: mmdet 3.x ``AnchorHead.predict_by_feat`` for sigmoid classifiers with
  ``DeltaXYWHBBoxCoder`` (the semantics of the anchor heads' export wrapper, ``deploy/heads/anchor.py``), on
  per-level raw maps;
* :func:`postprocess_gfl` - the lite detectors' ``LiteGFLHead`` (Generalized Focal Loss, Li et al., arXiv
  2006.04388, on anchor-free points as in NanoDet-Plus): the raw tensor ``(N, C + 4 (R + 1))`` of sigmoid class
  scores and distance distributions, decoded as its ``predict_by_feat`` does (the semantics of
  the GFL export wrapper, ``deploy/heads/gfl.py``);
* :func:`postprocess_pico` - PP-PicoDet's ``PicoHead``: the same raw tensor layout, decoded as PaddleDetection does
  (cell-centre points, a per-level top-k of points by their best class score, per-class ``nms_top_k``; the semantics
  of ``PicoHead.predict_by_feat`` and of ``deploy/heads/pico.py``).

This module imports nothing but numpy and the standard library; the board runners (:mod:`.cli`) and the
exporters' checks use the same functions.
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
    return keep_best_candidates(all_boxes, all_scores, all_labels, cfg)


# ---------------------------------------------------------------------------------------------------- GFL points
#: The ``decoder`` entry of the post-processing meta of ``LiteGFLHead`` exports.
GFL_DECODER = 'gfl_points'


def level_shapes(img_hw: Sequence[int], strides: Sequence[int]) -> list[tuple[int, int]]:
    """Feature map size of every level for an ``img_hw`` input: ``ceil(size / stride)`` (stride-2 convs and pools
    with "same" padding, as in ShuffleNet and GhostPAN)."""
    h, w = int(img_hw[0]), int(img_hw[1])
    return [(-(-h // int(s)), -(-w // int(s))) for s in strides]


def grid_points(feat_h: int, feat_w: int, stride: float) -> np.ndarray:
    """``(H * W, 2)`` points ``(x, y) = (col, row) * stride``, row-major (mmdet's ``MlvlPointGenerator``, offset 0)."""
    xx, yy = np.meshgrid(np.arange(feat_w, dtype=np.float32), np.arange(feat_h, dtype=np.float32))
    return np.stack([xx.reshape(-1), yy.reshape(-1)], axis=1) * np.float32(stride)


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax along ``axis``."""
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def distribution_to_distance(reg: np.ndarray, reg_max: int) -> np.ndarray:
    """``(K, 4 (R + 1))`` distance distributions (logits) -> ``(K, 4)`` expected distances in strides (GFL's
    integral: softmax over the ``R + 1`` bins, then the mean of ``0..R``; mmdet's ``Integral``)."""
    prob = softmax(np.asarray(reg, np.float32).reshape(-1, 4, reg_max + 1), axis=-1)
    return (prob @ np.arange(reg_max + 1, dtype=np.float32)).astype(np.float32)


def _point_rows(output: np.ndarray, meta: dict[str, Any], img_hw: Sequence[int],
                what: str) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """The one-tensor raw output ``(N, C + 4 (R + 1))`` of a point head (a leading batch axis of size 1 accepted)
    as float32 rows and the levels' ``(H, W)``; ValueError naming the expected shape for anything else."""
    nc, reg_max = int(meta['num_classes']), int(meta['reg_max'])
    out = np.asarray(output, dtype=np.float32)
    if out.ndim == 3 and out.shape[0] == 1:
        out = out[0]
    width = nc + 4 * (reg_max + 1)
    shapes = level_shapes(img_hw, meta['strides'])
    total = sum(h * w for h, w in shapes)
    if out.ndim != 2 or out.shape != (total, width):
        raise ValueError(f'raw {what} output must be ({total}, {width}) for a {img_hw[0]}x{img_hw[1]} input (levels '
                         f'{shapes}, {nc} classes, reg_max {reg_max}), got {out.shape}')
    return out, shapes


def _distance_boxes(points: np.ndarray, dists: np.ndarray, reg_max: int, stride: float,
                    img_hw: Sequence[int]) -> np.ndarray:
    """Boxes ``(x1, y1, x2, y2)`` = expected (left, top, right, bottom) distance x stride around ``points``, clipped
    to the input."""
    dist = distribution_to_distance(dists, reg_max) * np.float32(stride)
    boxes = np.concatenate([points - dist[:, :2], points + dist[:, 2:]], axis=1)
    boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, int(img_hw[1]))
    boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, int(img_hw[0]))
    return boxes.astype(np.float32)


def postprocess_gfl(output: np.ndarray, meta: dict[str, Any], img_hw: tuple[int, int]) -> dict[str, np.ndarray]:
    """Detections of one image from the raw ``LiteGFLHead`` tensor, as its ``predict_by_feat`` computes them.

    ``output`` is ``(N, C + 4 (R + 1))`` (a leading batch axis of size 1 is accepted): per point, sigmoid class
    scores then the 4 distance distributions (left, top, right, bottom), points row-major, finest level first;
    ``img_hw`` is the size of the network input. Per level, the ``nms_pre`` best (point, class) pairs scoring above
    ``score_thr`` (mmdet's ``filter_scores_and_topk``) are decoded (expected distance x stride around the point,
    clipped to the input); boxes not larger than ``min_bbox_size`` are dropped, then class-aware NMS and the
    ``max_per_img`` best. Returns ``boxes`` (N, 4) in input pixels, ``scores`` (N,) and ``labels`` (N,), sorted by
    decreasing score.
    """
    nc, reg_max, cfg = int(meta['num_classes']), int(meta['reg_max']), meta['test_cfg']
    out, shapes = _point_rows(output, meta, img_hw, 'GFL')
    all_boxes, all_scores, all_labels = [], [], []
    start = 0
    for (h, w), stride in zip(shapes, meta['strides']):
        rows = out[start:start + h * w]
        start += h * w
        flat = rows[:, :nc].reshape(-1)
        idx = np.nonzero(flat > cfg['score_thr'])[0]
        idx = idx[np.argsort(-flat[idx], kind='stable')][:cfg['nms_pre']]
        point_idx, labels = idx // nc, idx % nc
        points = grid_points(h, w, stride)[point_idx]
        all_boxes.append(_distance_boxes(points, rows[point_idx, nc:], reg_max, stride, img_hw))
        all_scores.append(flat[idx])
        all_labels.append(labels)
    return keep_best_candidates(all_boxes, all_scores, all_labels, cfg)


# ---------------------------------------------------------------------------------------------------- PicoDet
#: The ``decoder`` entry of the post-processing meta of ``PicoHead`` exports.
PICO_DECODER = 'pico_points'


def top_k_per_class(scores: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` best scores of each label (all when ``k <= 0``), in no particular order."""
    if k <= 0 or labels.size == 0:
        return np.arange(labels.size)
    order = np.argsort(-scores, kind='stable')
    order = order[np.argsort(labels[order], kind='stable')]
    sorted_labels = labels[order]
    rank = np.arange(order.size) - np.searchsorted(sorted_labels, sorted_labels, side='left')
    return order[rank < k]


def postprocess_pico(output: np.ndarray, meta: dict[str, Any], img_hw: tuple[int, int]) -> dict[str, np.ndarray]:
    """Detections of one image from the raw ``PicoHead`` tensor, as its ``predict_by_feat`` computes them.

    ``output`` is ``(N, C + 4 (R + 1))`` as for :func:`postprocess_gfl` (a leading batch axis of size 1 is
    accepted). Per level the ``nms_pre`` points of highest best-class score, points at ``((col, row) + cell_offset) *
    stride``, boxes = expected distance x stride around them clipped to the input; then the (point, class) pairs
    scoring above ``score_thr``, the ``nms_top_k`` best of each class, the ``min_bbox_size`` filter, class-aware NMS
    and the ``max_per_img`` best (PaddleDetection's ``GFLHead.get_bboxes_single`` + ``MultiClassNMS``).
    """
    nc, reg_max, cfg = int(meta['num_classes']), int(meta['reg_max']), meta['test_cfg']
    offset = float(meta['cell_offset'])
    out, shapes = _point_rows(output, meta, img_hw, 'PicoDet')
    all_boxes, all_scores = [], []
    start = 0
    for (h, w), stride in zip(shapes, meta['strides']):
        rows = out[start:start + h * w]
        start += h * w
        keep = np.arange(h * w)
        if 0 < cfg['nms_pre'] < h * w:
            keep = np.argsort(-rows[:, :nc].max(axis=1), kind='stable')[:cfg['nms_pre']]
        points = grid_points(h, w, stride)[keep] + np.float32(offset * stride)
        all_boxes.append(_distance_boxes(points, rows[keep, nc:], reg_max, stride, img_hw))
        all_scores.append(rows[keep, :nc])
    boxes, scores = np.concatenate(all_boxes), np.concatenate(all_scores)
    point_idx, labels = np.nonzero(scores > cfg['score_thr'])
    boxes, scores = boxes[point_idx], scores[point_idx, labels]
    keep = top_k_per_class(scores, labels, int(cfg.get('nms_top_k', -1)))
    return keep_best_candidates([boxes[keep]], [scores[keep]], [labels[keep]], cfg)


#: Keys of the post-processing meta each decoder reads (``None``: the anchor-head decoder), and of its ``test_cfg``.
META_KEYS = {GFL_DECODER: ('num_classes', 'reg_max', 'strides', 'test_cfg'),
             PICO_DECODER: ('num_classes', 'reg_max', 'strides', 'cell_offset', 'test_cfg'),
             None: ('num_classes', 'strides', 'base_anchors', 'coder', 'test_cfg')}
TEST_CFG_KEYS = ('nms_pre', 'score_thr', 'iou_threshold', 'max_per_img')


def check_meta(meta: Any) -> None:
    """ValueError naming what is wrong when ``meta`` (an export report's ``postprocess``) names an unknown decoder
    or lacks a key its decoder reads; :func:`decode_outputs` runs it first."""
    if not isinstance(meta, dict):
        raise ValueError(f'postprocess must be a JSON object, got {type(meta).__name__}')
    decoder = meta.get('decoder')
    if decoder not in META_KEYS:
        raise ValueError(f"postprocess.decoder={decoder!r} is not a known decoder; allowed: {GFL_DECODER!r} (lite "
                         f'detectors), {PICO_DECODER!r} (PicoDet) or none (anchor heads)')
    missing = [k for k in META_KEYS[decoder] if k not in meta]
    if not missing and isinstance(meta['test_cfg'], dict):
        missing = [f'test_cfg.{k}' for k in TEST_CFG_KEYS if k not in meta['test_cfg']]
    elif not missing:
        missing = ['test_cfg (a JSON object)']
    if missing:
        raise ValueError(f"postprocess lacks {missing}, which the {decoder or 'anchor head'} decoder reads; export "
                         'the model again with tools/deploy/export_onnx.py')


def decode_outputs(outputs: Sequence[np.ndarray], meta: dict[str, Any],
                   img_hw: tuple[int, int]) -> dict[str, np.ndarray]:
    """Detections of one image from the raw outputs of an export without NMS, in the export's output order.

    ``meta['decoder'] == 'gfl_points'``: one raw ``LiteGFLHead`` tensor (:func:`postprocess_gfl`); ``'pico_points'``:
    one raw ``PicoHead`` tensor (:func:`postprocess_pico`); otherwise the
    per-level class maps then box-delta maps of a RetinaNet-like head (:func:`postprocess`). ValueError for a
    ``meta`` that :func:`check_meta` refuses.
    """
    check_meta(meta)
    if meta.get('decoder') == GFL_DECODER:
        if len(outputs) != 1:
            raise ValueError(f'a GFL export has one raw output, got {len(outputs)}')
        return postprocess_gfl(outputs[0], meta, img_hw)
    if meta.get('decoder') == PICO_DECODER:
        if len(outputs) != 1:
            raise ValueError(f'a PicoDet export has one raw output, got {len(outputs)}')
        return postprocess_pico(outputs[0], meta, img_hw)
    n = len(outputs) // 2
    return postprocess(outputs[:n], outputs[n:], meta, img_hw)


def keep_best_candidates(all_boxes: list, all_scores: list, all_labels: list, cfg: dict[str, Any]
                      ) -> dict[str, np.ndarray]:
    """mmdet's ``_bbox_post_process`` on the per-level candidates: the ``min_bbox_size`` filter, class-aware NMS,
    the ``max_per_img`` best (both decoders end here)."""
    boxes = np.concatenate(all_boxes).reshape(-1, 4)
    scores = np.concatenate(all_scores)
    labels = np.concatenate(all_labels).astype(np.int64)
    if cfg.get('min_bbox_size', -1) >= 0:
        wh = boxes[:, 2:] - boxes[:, :2]
        valid = (wh > cfg['min_bbox_size']).all(axis=1)
        boxes, scores, labels = boxes[valid], scores[valid], labels[valid]
    keep = batched_nms(boxes, scores, labels, cfg['iou_threshold'])[:cfg['max_per_img']]
    return dict(boxes=boxes[keep], scores=scores[keep], labels=labels[keep])


# ---------------------------------------------------------------------------------------------------- reports
def _expected_outputs(report: dict[str, Any], count: int) -> tuple[str, list[int] | None]:
    """What the export a report describes outputs: a description and the rank of every output (None: unknown)."""
    entry = report.get('postprocess')
    post: dict[str, Any] = entry if isinstance(entry, dict) else {}
    if report.get('what') == 'backbone':
        return 'a backbone export (feature maps)', [4] * count
    if report.get('with_nms'):
        return 'a detector with NMS in the graph (num_dets, boxes, scores, labels)', [1, 3, 2, 2]
    if post.get('decoder') in (GFL_DECODER, PICO_DECODER):
        return 'a lite detector without NMS (one raw tensor (B, N, C + 4 (reg_max + 1)))', [3]
    levels = post.get('num_levels')
    if 'decoder' not in post and isinstance(levels, int) and levels > 0:  # an unknown decoder: check_meta says so
        return f'a detector without NMS ({levels} class maps, then {levels} box maps)', [4] * (2 * levels)
    return 'a detector without NMS', None


def _io(nodes: Sequence[Any]) -> list[tuple[str, int | None]]:
    """``(name, rank)`` of ONNX Runtime ``NodeArg`` s (rank None when the shape is unknown)."""
    return [(n.name, len(n.shape) if isinstance(n.shape, (list, tuple)) else None) for n in nodes]


def check_session(session: Any, report: dict[str, Any], model: str, report_path: str) -> None:
    """ValueError naming both files when the export report ``report_path`` does not describe the graph ``model``.

    ``session`` is an ONNX Runtime session of ``model`` (anything with ``get_inputs`` / ``get_outputs``). Compared
    with the report: the one input (its name and rank), the output names and count, and the ranks the kind of export
    the report names has, so that a report copied next to another model is caught before any work.
    """
    inputs, outputs = _io(session.get_inputs()), _io(session.get_outputs())
    problems = []
    if len(inputs) != 1:
        problems.append(f'the model has {len(inputs)} inputs {[n for n, _ in inputs]}, an export has one')
    else:
        name, rank = inputs[0]
        if report.get('input_name') not in (None, name):
            problems.append(f"its input is {name!r}, the report's {report['input_name']!r}")
        shape = report.get('input_shape')
        if rank is not None and isinstance(shape, list) and rank != len(shape):
            problems.append(f'its input has rank {rank}, the report\'s input_shape {shape}')
    names = [n for n, _ in outputs]
    listed = report.get('output_names')
    if isinstance(listed, list) and listed != names:
        problems.append(f'its outputs are {names}, the report lists {listed}')
    what, ranks = _expected_outputs(report, len(outputs))
    got = [r for _, r in outputs]
    if ranks is not None and (len(got) != len(ranks) or any(r is not None and r != e for r, e in zip(got, ranks))):
        problems.append(f'its outputs have ranks {got}; {what} has {ranks}')
    if problems:
        raise ValueError(f'report {report_path!r} does not describe the model {model!r}: ' + '; '.join(problems)
                         + ' (a report of another export? keep every model with its own .onnx.json, or export again)')


def size_divisor(report: dict[str, Any]) -> int:
    """What every input side of the export a report describes must be a multiple of: the ``pad_size_divisor`` its
    inputs are padded to (the lite detectors' GhostPAN needs it: each level upsampled by 2 meets the next)."""
    pre = (report.get('postprocess') or {}).get('preprocess') if isinstance(report.get('postprocess'), dict) else None
    try:
        return max(1, int((pre or {}).get('pad_size_divisor', 1) or 1))
    except (TypeError, ValueError):
        return 1


def check_input_hw(report: dict[str, Any], hw: Sequence[int], what: str) -> None:
    """ValueError naming ``what`` (the input's source) unless ``hw`` (H, W) is an input size the dynamic export of
    ``report`` allows: positive multiples of :func:`size_divisor` (a static export takes its own size only, which
    the runners check against ``input_shape``)."""
    if not report.get('dynamic'):
        return
    h, w = int(hw[0]), int(hw[1])
    div = size_divisor(report)
    if h < div or w < div or h % div or w % div:
        up = [max(div, -(-v // div) * div) for v in (h, w)]
        raise ValueError(f'{what} is {h}x{w}, but the dynamic export takes H and W that are positive multiples of '
                         f'{div} (the padding divisor of its preprocessing, the coarsest stride its neck needs), '
                         f'e.g. {up[0]}x{up[1]}; pad the tensor bottom/right with 0, or give --image')
