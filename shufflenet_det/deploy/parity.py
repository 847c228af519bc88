"""Numerical parity between a deployed model and the PyTorch model it came from.

Every export checks itself: :func:`compare_tensors` for feature maps (max absolute difference against a stated
tolerance) and :func:`compare_detections` for detector outputs (same number of boxes, same labels, boxes and scores
within tolerance, boxes matched one-to-one so that ties in score order cannot fail a correct export). The result is a
plain dict, printed and stored as JSON next to the model.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def _np(x: Any) -> np.ndarray:
    if hasattr(x, 'detach'):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def compare_tensors(reference: Sequence[Any], actual: Sequence[Any], atol: float,
                    names: Sequence[str] | None = None) -> dict[str, Any]:
    """Compare output lists element-wise; ``passed`` is True when every shape matches and max |diff| <= atol."""
    if len(reference) != len(actual):
        return dict(kind='tensors', passed=False, atol=atol,
                    error=f'{len(actual)} outputs, expected {len(reference)}')
    names = list(names) if names is not None else [f'out{i}' for i in range(len(reference))]
    outputs, passed, worst = [], True, 0.0
    for name, ref, act in zip(names, reference, actual):
        ref, act = _np(ref).astype(np.float64), _np(act).astype(np.float64)
        if ref.shape != act.shape:
            outputs.append(dict(name=name, shape=list(ref.shape), actual_shape=list(act.shape), passed=False))
            passed = False
            continue
        diff = float(np.abs(ref - act).max()) if ref.size else 0.0
        scale = float(np.abs(ref).max()) if ref.size else 0.0
        ok = bool(np.isfinite(act).all()) and diff <= atol
        outputs.append(dict(name=name, shape=list(ref.shape), max_abs_diff=diff, ref_max_abs=scale, passed=ok))
        passed &= ok
        worst = max(worst, diff)
    return dict(kind='tensors', passed=bool(passed), atol=atol, max_abs_diff=worst, outputs=outputs)


def _match(ref_boxes: np.ndarray, ref_labels: np.ndarray, act_boxes: np.ndarray,
           act_labels: np.ndarray) -> np.ndarray:
    """For each reference box, the index of its same-label partner among the actual boxes, -1 if none.

    One-to-one, globally greedy on the max-coordinate distance (closest pairs first), so that a slightly moved box
    cannot steal the partner of an exact one.
    """
    order = np.full(len(ref_boxes), -1, dtype=np.int64)
    if len(ref_boxes) == 0 or len(act_boxes) == 0:
        return order
    dist = np.abs(ref_boxes[:, None, :] - act_boxes[None, :, :]).max(axis=2)
    dist[ref_labels[:, None] != act_labels[None, :]] = np.inf
    used = np.zeros(len(act_boxes), dtype=bool)
    for flat in np.argsort(dist, axis=None, kind='stable'):
        i, j = divmod(int(flat), len(act_boxes))
        if not np.isfinite(dist[i, j]):
            break
        if order[i] < 0 and not used[j]:
            order[i] = j
            used[j] = True
    return order


def compare_detections(reference: dict[str, Any], actual: dict[str, Any], box_atol: float,
                       score_atol: float) -> dict[str, Any]:
    """Compare one image's detections, each a dict of ``boxes`` (N, 4), ``scores`` (N,), ``labels`` (N,).

    Passes when the counts are equal, every reference box has a one-to-one partner with the same label, and the
    partners' boxes and scores differ by at most ``box_atol`` (pixels) and ``score_atol``. The only unmatched
    detections allowed are ties at the ``max_per_img`` cut-off (scores within ``score_atol`` of the lowest kept
    score on both sides), counted in ``boundary_swaps``.
    """
    rb, rs, rl = (_np(reference[k]) for k in ('boxes', 'scores', 'labels'))
    ab, as_, al = (_np(actual[k]) for k in ('boxes', 'scores', 'labels'))
    rb, ab = rb.reshape(-1, 4).astype(np.float64), ab.reshape(-1, 4).astype(np.float64)
    rs, as_ = rs.reshape(-1).astype(np.float64), as_.reshape(-1).astype(np.float64)
    rl, al = rl.reshape(-1).astype(np.int64), al.reshape(-1).astype(np.int64)
    result: dict[str, Any] = dict(kind='detections', box_atol=box_atol, score_atol=score_atol,
                                  num_reference=int(len(rb)), num_actual=int(len(ab)))
    if len(rb) != len(ab):
        result.update(passed=False, error=f'{len(ab)} detections, expected {len(rb)}')
        return result
    if len(rb) == 0:
        result.update(passed=True, max_box_diff=0.0, max_score_diff=0.0, labels_equal=True)
        return result
    order = _match(rb, rl, ab, al)
    unmatched_ref = np.where(order < 0)[0]
    if unmatched_ref.size:
        # a tie at the top-k cut-off may keep a different box of (almost) the same score: tolerated only for
        # detections scoring within score_atol of the lowest kept score, on both sides
        unmatched_act = np.setdiff1d(np.arange(len(ab)), order[order >= 0])
        cutoff = max(rs.min(), as_.min()) + score_atol
        if (rs[unmatched_ref] <= cutoff).all() and (as_[unmatched_act] <= cutoff).all():
            result['boundary_swaps'] = int(unmatched_ref.size)
            keep = order >= 0
            rb, rs, rl, order = rb[keep], rs[keep], rl[keep], order[keep]
        else:
            result.update(passed=False, labels_equal=False,
                          error=f'{int(unmatched_ref.size)} reference detections have no partner with the same '
                                'label')
            return result
    box_diff = float(np.abs(rb - ab[order]).max())
    score_diff = float(np.abs(rs - as_[order]).max())
    result.update(labels_equal=True, max_box_diff=box_diff, max_score_diff=score_diff,
                  passed=bool(box_diff <= box_atol and score_diff <= score_atol))
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
        parts.append(f"features max|diff|={max(c.get('max_abs_diff', float('nan')) for c in tens):.3g} "
                     f"(atol {tens[0]['atol']:g})")
    if dets:
        parts.append(f'{len(dets)} image(s), detections per image '
                     f"{[c['num_reference'] for c in dets]}, "
                     f"max box diff {max(c.get('max_box_diff', float('inf')) for c in dets):.3g} px "
                     f"(atol {dets[0]['box_atol']:g}), "
                     f"max score diff {max(c.get('max_score_diff', float('inf')) for c in dets):.3g} "
                     f"(atol {dets[0]['score_atol']:g})")
    errors = [c['error'] for c in checks if 'error' in c]
    if errors:
        parts.append('errors: ' + '; '.join(errors[:3]))
    return ', '.join(parts)
