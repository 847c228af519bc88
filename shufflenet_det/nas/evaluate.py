"""Scoring a path of a supernet detector: BN statistics recalibrated on training images, then COCO mAP on a held-out
split.

The BN statistics a supernet accumulates in training mix the many paths it trained; DetNAS (Chen et al., arXiv
1903.10979) and SPOS (Guo et al., arXiv 1904.00420) therefore recompute them for each candidate on training images
before evaluating it. :func:`recalibrate_bn` resets every BN of the model and accumulates exact averages
(``momentum=None``) over ``num_batches`` batches in inference of the rest of the network; :class:`PathScorer` then
runs the detector on the held-out loader and scores it with the configured evaluator (mmdet's ``CocoMetric``). No
Runner is involved: the loaders, the evaluator and the model are built once and reused for every candidate.
"""
from __future__ import annotations

import contextlib
import io
import logging
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..models.backbones.detnas_supernet import DetNASSupernet

if TYPE_CHECKING:
    from mmengine.model import BaseModel


@contextlib.contextmanager
def quiet() -> Any:
    """Silence pycocotools' printing and mmengine's INFO log (evaluation tables of every candidate)."""
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)


def supernets_of(model: nn.Module) -> list[DetNASSupernet]:
    """The supernet backbones inside ``model``."""
    return [m for m in model.modules() if isinstance(m, DetNASSupernet)]


def set_path(model: nn.Module, path: Sequence[int]) -> None:
    """Activate ``path`` in every supernet of ``model``."""
    supernets = supernets_of(model)
    if not supernets:
        raise ValueError(f'{type(model).__name__} holds no DetNASSupernet backbone')
    for supernet in supernets:
        supernet.set_path(path)


@torch.no_grad()
def recalibrate_bn(model: BaseModel, loader: Iterable, num_batches: int) -> int:
    """Recompute every BN's running statistics of a detector on ``num_batches`` batches of ``loader``.

    Every ``_BatchNorm`` is reset and accumulates a cumulative average (``momentum=None``) while the rest of the
    model runs in inference mode (``mode='tensor'``: backbone, neck, head). Returns the number of batches used; the
    model is left in eval mode with the BN momenta restored.
    """
    if not isinstance(num_batches, int) or isinstance(num_batches, bool) or num_batches < 1:
        raise ValueError(f'num_calib_batches={num_batches!r} must be an int >= 1')
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    momenta = [m.momentum for m in norms]
    model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    used = 0
    try:
        for batch in loader:
            if used >= num_batches:
                break
            data = model.data_preprocessor(batch, training=False)
            model(**data, mode='tensor')
            used += 1
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        model.eval()
    if used == 0:
        raise ValueError('the calibration dataloader yielded no batch')
    return used


@torch.no_grad()
def evaluate(model: BaseModel, loader: Iterable, evaluator: Any, num_samples: int) -> dict[str, float]:
    """Run ``model.test_step`` over ``loader`` and return ``evaluator``'s metrics (empty dict: no detections)."""
    model.eval()
    with quiet():
        for batch in loader:
            outputs = model.test_step(batch)
            evaluator.process(data_samples=outputs, data_batch=batch)
        metrics = evaluator.evaluate(num_samples)
    return {str(k): float(v) for k, v in (metrics or {}).items()}


#: The metric items mmdet's ``CocoMetric`` reports for ``bbox`` / ``segm`` unless ``metric_items`` says otherwise.
COCO_METRIC_ITEMS = ('mAP', 'mAP_50', 'mAP_75', 'mAP_s', 'mAP_m', 'mAP_l')


def evaluator_metric_keys(val_evaluator: Any) -> list[str] | None:
    """The metric names the evaluator config ``val_evaluator`` (a dict or a list) reports, e.g. ``'coco/bbox_mAP'``,
    as far as they are known before it runs: mmdet's ``CocoMetric`` with ``bbox`` / ``segm`` metrics (the per-class
    keys of ``classwise=True`` as the pattern ``<prefix>/*_precision``); None for any other evaluator."""
    keys: list[str] = []
    for ev in val_evaluator if isinstance(val_evaluator, (list, tuple)) else [val_evaluator]:
        if not isinstance(ev, Mapping) or ev.get('type') not in ('CocoMetric', 'mmdet.CocoMetric'):
            return None
        metrics = ev.get('metric', 'bbox')
        metrics = [metrics] if isinstance(metrics, str) else list(metrics)
        if any(m not in ('bbox', 'segm') for m in metrics):
            return None
        prefix = ev.get('prefix') or 'coco'
        keys += [f'{prefix}/{m}_{item}' for m in metrics for item in ev.get('metric_items') or COCO_METRIC_ITEMS]
        if ev.get('classwise'):
            keys.append(f'{prefix}/*_precision')  # mmdet 3.x: '<prefix>/<class name>_precision'
    return keys


def check_metric(metric: str, keys: Sequence[str], produced: bool = False) -> None:
    """ValueError naming ``metric`` and ``keys`` unless ``metric`` is one of ``keys`` (``*`` patterns allowed);
    ``produced``: the keys come from an evaluation rather than from the evaluator's config."""
    import fnmatch
    if not any(fnmatch.fnmatchcase(metric, key) for key in keys):
        raise ValueError(f'nas_search.metric={metric!r} is not a metric the held-out evaluator '
                         f'{"produced" if produced else "produces"}; its metrics: {sorted(keys)}')


class PathScorer:
    """``path -> dict(score, metrics)``: recalibrate BN on ``calib_loader`` then evaluate on ``val_loader``.

    Args:
        model: the supernet detector with the supernet's weights (kept in eval mode).
        calib_loader: training images for the BN statistics (a deterministic order makes scores repeatable).
        val_loader: the held-out images.
        evaluator: an mmengine ``Evaluator`` whose ``dataset_meta`` is set.
        num_calib_batches: batches of ``calib_loader`` per recalibration.
        metric: the metric that is the score (default ``'coco/bbox_mAP'``); a path whose detector finds nothing gets
            no COCO metrics from mmdet, and scores 0; metrics without this one raise ValueError naming it.
    """

    def __init__(self, model: nn.Module, calib_loader: Iterable, val_loader: Iterable, evaluator: Any,
                 num_calib_batches: int, metric: str = 'coco/bbox_mAP') -> None:
        self.model = model
        self.calib_loader = calib_loader
        self.val_loader = val_loader
        self.evaluator = evaluator
        self.num_calib_batches = num_calib_batches
        self.metric = metric
        self.num_samples = len(val_loader.dataset)  # type: ignore[attr-defined]

    def prepare(self, path: Sequence[int]) -> None:
        """Activate ``path`` and recalibrate the BN statistics for it."""
        set_path(self.model, path)
        recalibrate_bn(self.model, self.calib_loader, self.num_calib_batches)

    def __call__(self, path: Sequence[int]) -> Mapping[str, Any]:
        self.prepare(path)
        metrics = evaluate(self.model, self.val_loader, self.evaluator, self.num_samples)
        if metrics:  # no metrics at all: no detection (mAP 0); other metrics without the score's: a misspelt name
            check_metric(self.metric, list(metrics), produced=True)
        score = metrics.get(self.metric)
        return dict(score=float(score) if score is not None and score >= 0 else 0.0, metrics=metrics)
