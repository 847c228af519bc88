"""Numerical parity between a deployed model and the PyTorch model it came from.

Every export checks itself and stores the result as JSON next to the model. The rules follow the scale of what they
compare, so that the rounding of another summation order (another CPU, instruction set or runtime kernel) never fails
a correct export, while a wrong layer still does:

* **Tensors** (:func:`compare_tensors`): element-wise ``|actual - ref| <= atol * max(1, S) + rtol * |ref|`` where
  ``S = max |ref|`` of that tensor - numpy's ``allclose`` rule, with the absolute term taken relative to the
  tensor's magnitude when that exceeds 1. The rounding error of a float32 sum follows the magnitude of its terms,
  not of its result, so an output element near zero in a tensor reaching 1e4 carries an error of about
  ``1e4 * 1e-7 * sqrt(terms)``; a wrong layer changes elements by a sizeable fraction of ``S``.
* **Detections** (:func:`compare_detections`): detections are matched one to one (same label, closest boxes first);
  matched partners must agree within ``box_atol * max(1, S_box)`` pixels and ``score_atol * max(1, S_cls)``, where
  ``S_cls`` and ``S_box`` are the magnitudes of the raw class logits and box regression outputs the detections
  were decoded from (:func:`.detector.head_output_scales`; 1 when unknown).
  A detection without a partner is allowed only where rounding can legitimately move it across a decision boundary,
  and each such case is counted in the report:

  - ``score_thr``: its score is within the score tolerance of the score threshold;
  - ``top_k``: it sits at the ``max_per_img`` cut-off (score within the tolerance of the lowest kept score);
  - ``nms``: a same-label detection of about the same or higher score overlaps it with an IoU within the IoU
    tolerance of the NMS threshold (it was suppressed on one side only), or within the score tolerance of its own
    score with an IoU above the threshold (the two swapped which one suppresses the other).

  Such cases may number at most ``2 + 10%`` of the detections (:func:`max_boundary_cases`). Anything else - a
  missing or extra confident detection, another label, a moved box - fails.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

#: The tensor rule as stated in every report.
TENSOR_RULE = '|actual - ref| <= atol * max(1, max|ref|) + rtol * |ref| per element'
#: The detection rule as stated in every report.
DETECTION_RULE = ('one-to-one same-label matches within box_tol px / score_tol (= atol * max(1, magnitude of the '
                  'raw box / class outputs)); '
                  'unmatched only at score_thr, max_per_img or NMS-IoU boundaries, at most 2 + 10% of them')
#: Default relative term of the tensor rule (float32 exports). float32 keeps 24 bits (eps 1.2e-7); a folded-BN export
#: of a 50-layer network sums thousands of terms per output in another order, measured at up to ~5e-7 of S on
#: AVX2 / AVX-512 / reference kernels. 1e-3 of each element plus 1e-4 of S leave two orders of magnitude above
#: that, and stay far below what a wrong weight, BN or layer order changes (10% of S and more).
RTOL = 1e-3


def _np(x: Any) -> np.ndarray:
    if hasattr(x, 'detach'):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def output_scale(outputs: Sequence[Any]) -> float:
    """The magnitude ``S`` of a list of tensors: the largest finite ``|value|`` (0 for empty tensors)."""
    scale = 0.0
    for out in outputs:
        arr = np.abs(_np(out).astype(np.float64))
        arr = arr[np.isfinite(arr)]
        if arr.size:
            scale = max(scale, float(arr.max()))
    return scale


def tensor_tolerance(reference: np.ndarray, atol: float, rtol: float) -> np.ndarray:
    """The element-wise tolerance of :data:`TENSOR_RULE` for ``reference``."""
    ref = np.abs(reference.astype(np.float64))
    scale = float(ref.max()) if ref.size else 0.0
    return atol * max(1.0, scale) + rtol * ref


def compare_tensors(reference: Sequence[Any], actual: Sequence[Any], atol: float, rtol: float = RTOL,
                    names: Sequence[str] | None = None) -> dict[str, Any]:
    """Compare output lists element-wise with :data:`TENSOR_RULE`.

    ``passed`` is True when every shape matches, every value is finite and every element is within its tolerance.
    Each output records ``max_abs_diff``, ``ref_max_abs`` (its ``S``) and ``worst_ratio`` (the largest
    ``|diff| / tolerance``: at most 1 when it passes).
    """
    result: dict[str, Any] = dict(kind='tensors', rule=TENSOR_RULE, atol=atol, rtol=rtol)
    if len(reference) != len(actual):
        result.update(passed=False, error=f'{len(actual)} outputs, expected {len(reference)}')
        return result
    names = list(names) if names is not None else [f'out{i}' for i in range(len(reference))]
    outputs, passed, worst, worst_ratio = [], True, 0.0, 0.0
    for name, ref, act in zip(names, reference, actual):
        ref, act = _np(ref).astype(np.float64), _np(act).astype(np.float64)
        if ref.shape != act.shape:
            outputs.append(dict(name=name, shape=list(ref.shape), actual_shape=list(act.shape), passed=False))
            passed = False
            continue
        finite = bool(np.isfinite(act).all())
        diff = np.abs(ref - act)
        tol = tensor_tolerance(ref, atol, rtol)
        within = bool((diff <= tol).all())  # compared directly: a negative tolerance passes nothing
        with np.errstate(divide='ignore', invalid='ignore'):
            ratio = float(np.where(tol > 0, diff / np.where(tol > 0, tol, 1), np.inf).max()) if ref.size else 0.0
        max_diff = float(diff.max()) if ref.size else 0.0
        ok = finite and within
        outputs.append(dict(name=name, shape=list(ref.shape), max_abs_diff=max_diff,
                            ref_max_abs=float(np.abs(ref).max()) if ref.size else 0.0,
                            worst_ratio=ratio if finite else float('inf'), passed=ok))
        passed &= ok
        worst = max(worst, max_diff)
        worst_ratio = max(worst_ratio, ratio if finite else float('inf'))
    result.update(passed=bool(passed), max_abs_diff=worst, worst_ratio=worst_ratio, outputs=outputs)
    return result


def _match(ref_boxes: np.ndarray, ref_labels: np.ndarray, act_boxes: np.ndarray, act_labels: np.ndarray,
           box_tol: float) -> np.ndarray:
    """For each reference box, the index of its same-label partner among the actual boxes, -1 if none.

    One-to-one, globally greedy on the max-coordinate distance (closest pairs first), so that a slightly moved box
    cannot steal the partner of an exact one; boxes further apart than ``box_tol`` are no partners.
    """
    order = np.full(len(ref_boxes), -1, dtype=np.int64)
    if len(ref_boxes) == 0 or len(act_boxes) == 0:
        return order
    dist = np.abs(ref_boxes[:, None, :] - act_boxes[None, :, :]).max(axis=2)
    dist[(ref_labels[:, None] != act_labels[None, :]) | (dist > box_tol)] = np.inf
    used = np.zeros(len(act_boxes), dtype=bool)
    for flat in np.argsort(dist, axis=None, kind='stable'):
        i, j = divmod(int(flat), len(act_boxes))
        if not np.isfinite(dist[i, j]):
            break
        if order[i] < 0 and not used[j]:
            order[i] = j
            used[j] = True
    return order


def max_boundary_cases(num_detections: int) -> int:
    """How many boundary cases rounding can explain among ``num_detections``: 2 + 10%.

    Rounding flips a decision only for a detection inside a band of the score / IoU tolerance around a boundary,
    where detections land by coincidence: a correct export shows a handful. A systematic error (a shifted or
    rescaled decoding, a wrong stride) moves every detection by the same small amount, which alone could pass for
    NMS swaps of near-identical boxes, and is caught by this bound.
    """
    return 2 + num_detections // 10


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix of (N, 4) and (M, 4) boxes ``x1, y1, x2, y2``."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(axis=1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def _iou_tolerance(boxes: np.ndarray, box_tol: float) -> np.ndarray:
    """How far rounding of ``box_tol`` px can move the IoU of each box with another: about ``4 box_tol / side``."""
    side = np.clip(np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]), 1e-6, None)
    return np.minimum(1.0, 1e-6 + 4.0 * box_tol / side)


def _boundary_reason(i: int, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, others: np.ndarray,
                     others_scores: np.ndarray, others_labels: np.ndarray, test_cfg: Mapping[str, Any],
                     lowest_kept: float, full: bool, box_tol: float, score_tol: float) -> str | None:
    """Why the unmatched detection ``i`` of one side may legitimately be missing on the other (None: no reason).

    ``full``: both sides hold ``max_per_img`` detections whose lowest scores agree within ``score_tol``, the
    higher of which is ``lowest_kept``.
    """
    score = scores[i]
    thr = test_cfg.get('score_thr')
    if thr is not None and abs(score - float(thr)) <= score_tol:
        return 'score_thr'
    if full and abs(score - lowest_kept) <= score_tol:
        return 'top_k'
    iou_thr = test_cfg.get('iou_threshold')
    if iou_thr is None:
        return None
    # candidates: every other detection of the same label, on either side
    cand_boxes = np.concatenate([np.delete(boxes, i, axis=0), others])
    cand_scores = np.concatenate([np.delete(scores, i), others_scores])
    cand_labels = np.concatenate([np.delete(labels, i), others_labels])
    same = cand_labels == labels[i]
    if not same.any():
        return None
    ious = box_iou(boxes[i:i + 1], cand_boxes[same])[0]
    tol = _iou_tolerance(boxes[i:i + 1], box_tol)[0]
    near_thr = (np.abs(ious - float(iou_thr)) <= tol) & (cand_scores[same] >= score - score_tol)
    swapped = (ious > float(iou_thr) - tol) & (np.abs(cand_scores[same] - score) <= score_tol)
    return 'nms' if (near_thr | swapped).any() else None


def _factor(scale: float) -> float:
    return max(1.0, float(scale)) if np.isfinite(scale) else 1.0


def compare_detections(reference: dict[str, Any], actual: dict[str, Any], box_atol: float, score_atol: float,
                       test_cfg: Mapping[str, Any] | None = None, scale: float = 1.0,
                       box_scale: float | None = None) -> dict[str, Any]:
    """Compare one image's detections, each a dict of ``boxes`` (N, 4), ``scores`` (N,), ``labels`` (N,).

    The rule is in the module docstring: partners within ``box_atol * max(1, box_scale)`` px and ``score_atol *
    max(1, scale)`` (``scale``: the magnitude of the class logits, ``box_scale``: of the box regression outputs,
    default ``scale``); unmatched detections only at the boundaries of ``test_cfg`` (``score_thr``,
    ``max_per_img``, ``iou_threshold``; a missing key disables that allowance), each counted in ``boundary``.
    """
    cfg = dict(test_cfg or {})
    box_scale = scale if box_scale is None else box_scale
    box_tol, score_tol = box_atol * _factor(box_scale), score_atol * _factor(scale)
    rb, rs, rl = (_np(reference[k]) for k in ('boxes', 'scores', 'labels'))
    ab, as_, al = (_np(actual[k]) for k in ('boxes', 'scores', 'labels'))
    rb, ab = rb.reshape(-1, 4).astype(np.float64), ab.reshape(-1, 4).astype(np.float64)
    rs, as_ = rs.reshape(-1).astype(np.float64), as_.reshape(-1).astype(np.float64)
    rl, al = rl.reshape(-1).astype(np.int64), al.reshape(-1).astype(np.int64)
    result: dict[str, Any] = dict(kind='detections', rule=DETECTION_RULE, box_atol=box_atol, score_atol=score_atol,
                                  scale=float(scale), box_scale=float(box_scale), box_tol=box_tol,
                                  score_tol=score_tol,
                                  num_reference=int(len(rb)), num_actual=int(len(ab)))
    if not (np.isfinite(ab).all() and np.isfinite(as_).all()):
        result.update(passed=False, error='non-finite boxes or scores')
        return result
    order = _match(rb, rl, ab, al, box_tol)
    unmatched_ref = np.where(order < 0)[0]
    unmatched_act = np.setdiff1d(np.arange(len(ab)), order[order >= 0])
    # a tie at the max_per_img cut-off: both sides full, and the detection scores within the tolerance of the
    # lowest kept score of each side
    max_per_img = cfg.get('max_per_img')
    full = max_per_img is not None and min(len(rb), len(ab)) >= int(max_per_img) > 0
    lowest = max(float(rs.min()), float(as_.min())) if full else 0.0
    full = full and abs(float(rs.min()) - float(as_.min())) <= score_tol
    boundary: dict[str, int] = {}
    for side, idx in (('reference', unmatched_ref), ('actual', unmatched_act)):
        boxes, scores, labels = (rb, rs, rl) if side == 'reference' else (ab, as_, al)
        others = (ab, as_, al) if side == 'reference' else (rb, rs, rl)
        for i in idx:
            why = _boundary_reason(int(i), boxes, scores, labels, *others, cfg, lowest, full, box_tol, score_tol)
            if why is None:
                result.update(passed=False, labels_equal=False,
                              error=f'{len(unmatched_ref)} of {len(rb)} reference and {len(unmatched_act)} of '
                                    f'{len(ab)} actual detections have no same-label partner; e.g. the {side} '
                                    f'detection label {int(labels[i])} score {scores[i]:.4g} box '
                                    f'{np.round(boxes[i], 2).tolist()} lies at no score / top-k / NMS boundary')
                return result
            boundary[why] = boundary.get(why, 0) + 1
    allowed = max_boundary_cases(max(len(rb), len(ab)))
    if sum(boundary.values()) > allowed:
        result.update(passed=False, labels_equal=False, boundary=boundary,
                      error=f'{sum(boundary.values())} detections without a partner at a score / top-k / NMS '
                            f'boundary {boundary}; rounding explains at most {allowed} of {max(len(rb), len(ab))} '
                            '(a systematic difference, e.g. shifted or rescaled boxes, moves them all)')
        return result
    keep = order >= 0
    if keep.any():
        box_diff = float(np.abs(rb[keep] - ab[order[keep]]).max())
        score_diff = float(np.abs(rs[keep] - as_[order[keep]]).max())
    else:
        box_diff = score_diff = 0.0
    result.update(labels_equal=True, max_box_diff=box_diff, max_score_diff=score_diff, boundary=boundary,
                  passed=bool(box_diff <= box_tol and score_diff <= score_tol))
    return result


def summarize(checks: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Combine several checks (e.g. one per image) into one record with an overall ``passed``."""
    return dict(passed=bool(all(c.get('passed', False) for c in checks)) and len(checks) > 0,
                num_checks=len(checks), checks=list(checks))


def format_report(report: dict[str, Any]) -> str:
    """One-line human summary of a parity report."""
    status = 'PASSED' if report.get('passed') else 'FAILED'
    parts = [f'parity {status}']
    checks = report.get('checks', [report])
    tens = [c for c in checks if c.get('kind') == 'tensors']
    dets = [c for c in checks if c.get('kind') == 'detections']
    if tens:
        parts.append(f"features max|diff|={max(c.get('max_abs_diff', float('nan')) for c in tens):.3g}, "
                     f"worst diff/tolerance {max(c.get('worst_ratio', float('inf')) for c in tens):.3g} "
                     f"(atol {tens[0]['atol']:g} * max(1, max|ref|) + rtol {tens[0]['rtol']:g} * |ref|)")
    if dets:
        swaps: dict[str, int] = {}
        for c in dets:
            for k, v in c.get('boundary', {}).items():
                swaps[k] = swaps.get(k, 0) + v
        parts.append(f'{len(dets)} image(s), detections per image '
                     f"{[c['num_reference'] for c in dets]}, "
                     f"max box diff {max(c.get('max_box_diff', float('inf')) for c in dets):.3g} px "
                     f"(tol {max(c['box_tol'] for c in dets):.3g}), "
                     f"max score diff {max(c.get('max_score_diff', float('inf')) for c in dets):.3g} "
                     f"(tol {max(c['score_tol'] for c in dets):.3g})"
                     + (f', boundary cases {swaps}' if swaps else ''))
        if not any(c['num_reference'] or c['num_actual'] for c in dets):
            parts.append('WARNING: no detection above score_thr on any check image, so the detections compared '
                         'nothing (an untrained model?): check with --images showing objects or a trained checkpoint')
    errors = [c['error'] for c in checks if 'error' in c]
    if errors:
        parts.append('errors: ' + '; '.join(errors[:3]))
    return ', '.join(parts)
