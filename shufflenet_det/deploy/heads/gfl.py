"""The GFL form: the lite detectors' ``LiteGFLHead`` (the NanoDet-Plus design in mmdet).

The head predicts, per point of every level, class logits and four distance distributions of ``reg_max + 1`` bins
(Generalized Focal Loss, Li et al., NeurIPS 2020, arXiv 2006.04388). :class:`GFLExportWrapper` maps a normalised image
batch ``(B, 3, H, W)`` to

* ``with_nms=False`` (raw): one tensor ``output`` ``(B, N, C + 4 (R + 1))`` - the head's own
  :meth:`~shufflenet_det.models.dense_heads.LiteGFLHead.flatten_outputs`: sigmoid class scores, then the distance
  distributions (logits), points row-major and finest level first. The network only: decoding and NMS run outside
  the graph (``runtime.postprocess.postprocess_gfl``, driven by :meth:`GFLForm.postprocess_meta`, which every export
  stores next to the model);
* ``with_nms=True``: ``num_dets, boxes, scores, labels`` - the layout of the anchor form (TensorRT's EfficientNMS),
  so evaluation and quantisation tools work unchanged. The graph reproduces ``LiteGFLHead.predict_by_feat``: per
  level the ``nms_pre`` best (point, class) pairs above ``score_thr``, the softmax integral times the stride around
  the point, boxes clipped to the input, the ``min_bbox_size`` filter, class-aware NMS (one ONNX
  ``NonMaxSuppression``) and the ``max_per_img`` best.

Points and clip limits are computed from tensor shapes, so one graph serves static and dynamic input sizes.
:func:`gfl_candidates` is also the candidate stage of mmdeploy's rewriter of the head (:mod:`..mmdeploy_lite`).
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...models.dense_heads import LiteGFLHead
from ...runtime.postprocess import GFL_DECODER
from ..forms import FlatOutputExportWrapper, HeadDeployForm, register_deploy_form
from ..nms import select_detections
from .common import arange_like, check_nms_type, test_cfg_meta


@register_deploy_form(LiteGFLHead)
class GFLForm(HeadDeployForm):
    """``LiteGFLHead``: one raw tensor, or the GFL decoding + NMS in the graph."""

    name = 'gfl'
    reproduces = ('predict_by_feat',)
    mmdeploy_matches_mmdet = True  # mmdeploy_lite's rewriter is mmdet's post-processing in graph form
    mmdeploy_ncnn = False  # mmdeploy's ncnn end2end models decode anchors (DetectionOutput); the head has points

    def check(self, head: Any) -> None:
        """ValueError unless the head has the GFL outputs and its test settings can be exported (``nms`` type
        'nms', ``nms_pre`` > 0)."""
        missing = [a for a in ('num_classes', 'reg_max', 'strides', 'flatten_outputs') if not hasattr(head, a)]
        if missing:
            raise ValueError(f'{type(head).__name__} is not a GFL head like LiteGFLHead (missing {missing})')
        cfg = head.test_cfg or {}
        check_nms_type(cfg)
        if int(cfg.get('nms_pre', -1)) <= 0:
            raise ValueError(f"test_cfg.nms_pre must be > 0 for a lite detector export, got {cfg.get('nms_pre', -1)} "
                             '(the candidates per level form a fixed-size top-k in the graph)')
        if 'iou_threshold' not in (cfg.get('nms', {}) or {}):
            raise ValueError('test_cfg.nms.iou_threshold is missing')

    def postprocess_meta(self, head: Any) -> dict[str, Any]:
        """What ``runtime.postprocess.postprocess_gfl`` needs to decode the raw tensor (``decoder='gfl_points'``)."""
        self.check(head)
        return dict(
            decoder=GFL_DECODER,
            head=type(head).__name__,
            num_classes=int(head.num_classes),
            reg_max=int(head.reg_max),
            num_levels=len(head.strides),
            strides=[int(s) for s in head.strides],
            layout='(N, num_classes + 4 * (reg_max + 1)): sigmoid class scores, then the left/top/right/bottom '
                   'distance distributions (logits, in strides); points (x, y) = (col, row) * stride, row-major, '
                   'finest level first',
            test_cfg=test_cfg_meta(head.test_cfg),
        )

    def make_wrapper(self, detector: nn.Module, with_nms: bool) -> GFLExportWrapper:
        return GFLExportWrapper(detector, with_nms=with_nms)

    def split_raw(self, head: Any, raw: Sequence[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """The one tensor's class columns (sigmoid scores), then its distance distributions."""
        nc = int(head.num_classes)
        return [out[..., :nc] for out in raw], [out[..., nc:] for out in raw]


def _points(feat: Tensor, stride: float) -> Tensor:
    """``(H * W, 2)`` points of a level map ``feat``, row-major (``MlvlPointGenerator`` with offset 0); built from
    tensor ops, so they follow the input size in a dynamic graph."""
    xs = arange_like(feat[0, 0, 0, :]) * stride  # (W,)
    ys = arange_like(feat[0, 0, :, 0]) * stride  # (H,)
    xx = xs[None, :] + torch.zeros_like(ys)[:, None]
    yy = ys[:, None] + torch.zeros_like(xs)[None, :]
    return torch.stack([xx, yy], dim=-1).reshape(-1, 2)


def gfl_candidates(head: Any, maps: Sequence[Tensor], img_hw: Tensor,
                   nms_pre: int) -> tuple[Tensor, Tensor, Tensor]:
    """Decoded candidates of every level in graph form: ``boxes`` (B, K, 4), ``scores`` (B, K), ``labels`` (B, K).

    Per level, the ``nms_pre`` best (point, class) pairs (a fixed-size top-k: a level with fewer pairs is padded with
    zero scores, which any positive score threshold drops), their distance distributions integrated (softmax over
    the ``reg_max + 1`` bins, mean bin) times the stride around the point, boxes clipped to ``img_hw`` (H, W) as
    ``LiteGFLHead.predict_by_feat`` does. ``K = nms_pre * levels``. Used by :class:`GFLExportWrapper` and by the
    mmdeploy rewriter (:mod:`..mmdeploy_lite`).
    """
    nc, bins = int(head.num_classes), int(head.reg_max) + 1
    project = torch.arange(bins, dtype=maps[0].dtype, device=maps[0].device)
    img_hw = img_hw.to(maps[0].dtype)
    limit = torch.stack([img_hw[1], img_hw[0], img_hw[1], img_hw[0]])
    all_boxes, all_scores, all_labels = [], [], []
    for out, stride in zip(maps, head.strides):
        b = out.shape[0]
        flat = out.flatten(2).permute(0, 2, 1)
        cls, reg = flat.split([nc, 4 * bins], dim=-1)
        scores = cls.sigmoid().reshape(b, -1)
        points = _points(out, float(stride))
        k = int(nms_pre)
        scores = torch.cat([scores, scores.new_zeros((b, k))], dim=1)
        reg = torch.cat([reg, reg.new_zeros((b, k, 4 * bins))], dim=1)
        points = torch.cat([points, points.new_zeros((k, 2))], dim=0)
        top_scores, top_idx = scores.topk(k, dim=1)
        point_idx = torch.div(top_idx, nc, rounding_mode='floor')
        labels = top_idx - point_idx * nc
        sel_reg = torch.gather(reg, 1, point_idx.unsqueeze(-1).expand(-1, -1, 4 * bins))
        sel_points = points[point_idx]
        dist = (F.softmax(sel_reg.reshape(b, k, 4, bins), dim=-1) * project).sum(-1) * float(stride)
        boxes = torch.cat([sel_points - dist[..., :2], sel_points + dist[..., 2:]], dim=-1)
        all_boxes.append(torch.minimum(boxes.clamp(min=0), limit))
        all_scores.append(top_scores)
        all_labels.append(labels)
    return torch.cat(all_boxes, dim=1), torch.cat(all_scores, dim=1), torch.cat(all_labels, dim=1)


class GFLExportWrapper(FlatOutputExportWrapper):
    """See the module docstring. The detector is used as is (call ``switch_to_deploy`` on it beforehand)."""

    form = GFLForm

    def detections(self, head_outputs: Sequence[Any], img_hw: Tensor) -> tuple[Tensor, ...]:
        """:func:`gfl_candidates`, then :func:`..nms.select_detections`."""
        (maps,) = head_outputs
        boxes, scores, labels = gfl_candidates(self.detector.bbox_head, maps, img_hw, self.nms_pre)
        return select_detections(boxes, scores, labels, score_thr=self.score_thr, iou_thr=self.iou_thr,
                                 max_per_img=self.max_per_img, min_bbox_size=self.min_bbox_size)
