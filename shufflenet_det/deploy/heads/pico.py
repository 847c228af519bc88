"""The PicoDet form: PP-PicoDet's ``PicoHead`` (legacy model zoo design,
:mod:`shufflenet_det.models.dense_heads.pico_head`).

The head's outputs have the layout of the lite detectors' GFL head (per point sigmoid class scores, then four
distance distributions of ``reg_max + 1`` bins), so the raw export is the same: :class:`PicoExportWrapper` maps a
normalised image batch ``(B, 3, H, W)`` to one tensor ``output`` ``(B, N, C + 4 (R + 1))``, the head's own
:meth:`~shufflenet_det.models.dense_heads.PicoHead.flatten_outputs` (points row-major, finest level first). What
differs is the decoding, done outside the graph by ``runtime.postprocess.postprocess_pico`` (decoder
``'pico_points'``): points at cell centres (``cell_offset``), a per-level top-k of points by their best class score
(not of (point, class) pairs), a per-class ``nms_top_k`` before NMS.

With ``with_nms=True`` the wrapper gives ``num_dets, boxes, scores, labels`` (the layout of every NMS graph here) by
:func:`pico_candidates` + :func:`..nms.select_detections`, which reproduce ``PicoHead.predict_by_feat``: per level
the ``nms_pre`` points of highest best-class score (a fixed-size top-k; a level with fewer points is padded with
zero-score points, which any positive ``score_thr`` drops), their boxes decoded around the cell centres and clipped,
every (point, class) pair of them a candidate; per class the ``nms_top_k`` best candidates (a top-k over the class's
column: the same pairs as Paddle's top-k of the pairs above ``score_thr``); then the size filter, class-aware NMS
(one ONNX ``NonMaxSuppression``) and the ``max_per_img`` best. Points and clip limits follow the input's shape, so
one graph serves static and dynamic sizes.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...models.dense_heads import PicoHead
from ...runtime.postprocess import PICO_DECODER
from ..forms import FlatOutputExportWrapper, HeadDeployForm, register_deploy_form
from ..nms import select_detections
from .common import arange_like, check_nms_type, test_cfg_meta


@register_deploy_form(PicoHead)
class PicoForm(HeadDeployForm):
    """``PicoHead``: one raw tensor decoded by the runtime, or the decoding + NMS in the graph."""

    name = 'pico'
    reproduces = ('predict_by_feat', 'forward', 'flatten_outputs')
    mmdeploy_matches_mmdet = True  # mmdeploy_pico's rewriter is PicoHead's post-processing in graph form
    mmdeploy_ncnn = False  # mmdeploy's ncnn end2end models decode anchors (DetectionOutput); PicoHead has points

    def check(self, head: Any) -> None:
        """ValueError unless the head has PicoHead's outputs and its test settings can be decoded (``nms`` type
        'nms' with an ``iou_threshold``)."""
        missing = [a for a in ('num_classes', 'reg_max', 'strides', 'cell_offset', 'flatten_outputs')
                   if not hasattr(head, a)]
        if missing:
            raise ValueError(f'{type(head).__name__} is not a PicoHead (missing {missing})')
        cfg = head.test_cfg or {}
        check_nms_type(cfg)
        if 'iou_threshold' not in (cfg.get('nms', {}) or {}):
            raise ValueError('test_cfg.nms.iou_threshold is missing')
        if int(cfg.get('nms_pre', -1)) <= 0:
            raise ValueError(f"test_cfg.nms_pre must be > 0 for a PicoDet export, got {cfg.get('nms_pre', -1)} (the "
                             'points per level form a fixed-size top-k in the graph)')

    def postprocess_meta(self, head: Any) -> dict[str, Any]:
        """What ``runtime.postprocess.postprocess_pico`` needs (``decoder='pico_points'``)."""
        self.check(head)
        cfg = head.test_cfg
        return dict(
            decoder=PICO_DECODER,
            head=type(head).__name__,
            num_classes=int(head.num_classes),
            reg_max=int(head.reg_max),
            num_levels=len(head.strides),
            strides=[int(s) for s in head.strides],
            cell_offset=float(head.cell_offset),
            layout='(N, num_classes + 4 * (reg_max + 1)): sigmoid class scores, then the left/top/right/bottom '
                   'distance distributions (logits, in strides); points (x, y) = ((col, row) + cell_offset) * '
                   'stride, row-major, finest level first',
            test_cfg=dict(test_cfg_meta(cfg), nms_top_k=int(cfg.get('nms_top_k', -1))),
        )

    def make_wrapper(self, detector: nn.Module, with_nms: bool) -> PicoExportWrapper:
        return PicoExportWrapper(detector, with_nms=with_nms)

    def split_raw(self, head: Any, raw: Sequence[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """The one tensor's class columns (sigmoid scores), then its distance distributions."""
        nc = int(head.num_classes)
        return [out[..., :nc] for out in raw], [out[..., nc:] for out in raw]


def _cell_points(feat: Tensor, stride: float, offset: float) -> Tensor:
    """``(H * W, 2)`` cell points ``((col, row) + offset) * stride`` of a level map, row-major, from tensor ops."""
    xs = (arange_like(feat[0, 0, 0, :]) + offset) * stride
    ys = (arange_like(feat[0, 0, :, 0]) + offset) * stride
    xx = xs[None, :] + torch.zeros_like(ys)[:, None]
    yy = ys[:, None] + torch.zeros_like(xs)[None, :]
    return torch.stack([xx, yy], dim=-1).reshape(-1, 2)


def pico_points(head: Any, maps: Sequence[Tensor], img_hw: Tensor, nms_pre: int) -> tuple[Tensor, Tensor]:
    """``boxes`` (B, P, 4), ``scores`` (B, P, C): per level the ``nms_pre`` points of highest best-class score
    (padded with zero-score points where a level has fewer), decoded around the cell centres and clipped to
    ``img_hw`` (H, W); ``P = levels * nms_pre``. The point stage of :func:`pico_candidates` and of mmdeploy's
    rewriter of the head (:mod:`..mmdeploy_pico`)."""
    nc, bins = int(head.num_classes), int(head.reg_max) + 1
    project = torch.arange(bins, dtype=maps[0].dtype, device=maps[0].device)
    img_hw = img_hw.to(maps[0].dtype)
    limit = torch.stack([img_hw[1], img_hw[0], img_hw[1], img_hw[0]])
    k = int(nms_pre)
    all_boxes, all_scores = [], []
    for out, stride in zip(maps, head.strides):
        b = out.shape[0]
        cls, reg = out.flatten(2).permute(0, 2, 1).split([nc, 4 * bins], dim=-1)
        scores = torch.cat([cls.sigmoid(), cls.new_zeros((b, k, nc))], dim=1)
        reg = torch.cat([reg, reg.new_zeros((b, k, 4 * bins))], dim=1)
        points = _cell_points(out, float(stride), float(head.cell_offset))
        points = torch.cat([points, points.new_zeros((k, 2))], dim=0)
        idx = scores.max(dim=2).values.topk(k, dim=1).indices  # (B, k) points of highest best-class score
        sel_scores = torch.gather(scores, 1, idx.unsqueeze(-1).expand(-1, -1, nc))
        sel_reg = torch.gather(reg, 1, idx.unsqueeze(-1).expand(-1, -1, 4 * bins))
        dist = (F.softmax(sel_reg.reshape(b, k, 4, bins), dim=-1) * project).sum(-1) * float(stride)
        sel_points = points[idx]
        boxes = torch.cat([sel_points - dist[..., :2], sel_points + dist[..., 2:]], dim=-1)
        all_boxes.append(torch.minimum(boxes.clamp(min=0), limit))
        all_scores.append(sel_scores)
    return torch.cat(all_boxes, dim=1), torch.cat(all_scores, dim=1)


def class_top_k(scores: Tensor, nms_top_k: int) -> tuple[Tensor, Tensor]:
    """``(top_scores, top_idx)`` (B, C, t): per class the ``t = min(nms_top_k, P)`` best of the points' ``scores``
    (B, P, C), highest first (every point when ``nms_top_k <= 0``)."""
    p = scores.shape[1]
    t = p if nms_top_k <= 0 else min(int(nms_top_k), p)
    top_scores, top_idx = scores.permute(0, 2, 1).topk(t, dim=2)
    return top_scores, top_idx


def pico_candidates(head: Any, maps: Sequence[Tensor], img_hw: Tensor, nms_pre: int,
                    nms_top_k: int) -> tuple[Tensor, Tensor, Tensor]:
    """``boxes`` (B, K, 4), ``scores`` (B, K), ``labels`` (B, K): the candidates of ``PicoHead.predict_by_feat``
    before its size filter and NMS, in graph form (see module docstring): :func:`pico_points`, then
    :func:`class_top_k`. ``K = C * min(nms_top_k, levels * nms_pre)`` (every pair when ``nms_top_k <= 0``)."""
    boxes, scores = pico_points(head, maps, img_hw, nms_pre)  # (B, P, 4), (B, P, C)
    top_scores, top_idx = class_top_k(scores, nms_top_k)  # (B, C, t): the t best points of each class
    b, nc, t = top_scores.shape
    cand_boxes = torch.gather(boxes, 1, top_idx.reshape(b, nc * t, 1).expand(-1, -1, 4))
    labels = (arange_like(top_scores[0, :, 0]).long()[None, :, None] + torch.zeros_like(top_idx)).reshape(b, nc * t)
    return cand_boxes, top_scores.reshape(b, nc * t), labels


class PicoExportWrapper(FlatOutputExportWrapper):
    """See the module docstring. The detector is used as is (call ``switch_to_deploy`` on its parts beforehand)."""

    form = PicoForm

    def __init__(self, detector: nn.Module, with_nms: bool = True) -> None:
        super().__init__(detector, with_nms)
        self.nms_top_k: int = self.test_cfg['nms_top_k']

    def detections(self, head_outputs: Sequence[Any], img_hw: Tensor) -> tuple[Tensor, ...]:
        """:func:`pico_candidates`, then :func:`..nms.select_detections`."""
        (maps,) = head_outputs
        boxes, scores, labels = pico_candidates(self.detector.bbox_head, maps, img_hw, self.nms_pre, self.nms_top_k)
        return select_detections(boxes, scores, labels, score_thr=self.score_thr, iou_thr=self.iou_thr,
                                 max_per_img=self.max_per_img, min_bbox_size=self.min_bbox_size)
