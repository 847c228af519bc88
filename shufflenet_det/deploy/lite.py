"""Export wrapper of the lite detectors (``LiteDetector`` + ``LiteGFLHead``, the NanoDet-Plus design in mmdet).

The head predicts, per point of every level, class logits and four distance distributions of ``reg_max + 1`` bins
(Generalized Focal Loss, Li et al., NeurIPS 2020, arXiv 2006.04388). ``LiteExportWrapper(detector, with_nms)`` maps a
normalised image batch ``(B, 3, H, W)`` to

* ``with_nms=False`` (raw): one tensor ``output`` ``(B, N, C + 4 (R + 1))`` - the head's
  :meth:`~shufflenet_det.models.dense_heads.LiteGFLHead.flatten_outputs`: sigmoid class scores, then the distance
  distributions (logits), points row-major and finest level first. The network only: decoding and NMS run outside
  the graph (``runtime.postprocess.postprocess_gfl``, driven by :func:`lite_postprocess_meta`, which every export
  stores next to the model);
* ``with_nms=True``: ``num_dets, boxes, scores, labels`` - the layout of the RetinaNet wrapper
  (:class:`.detector.DetectorExportWrapper`, TensorRT's EfficientNMS), so evaluation and quantisation tools work
  unchanged. The graph reproduces ``LiteGFLHead.predict_by_feat``: per level the ``nms_pre`` best (point, class)
  pairs above ``score_thr``, the softmax integral times the stride around the point, boxes clipped to the input,
  the ``min_bbox_size`` filter, class-aware NMS (one ONNX ``NonMaxSuppression``) and the ``max_per_img`` best.

Points and clip limits are computed from tensor shapes, so one graph serves static and dynamic input sizes.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..runtime.postprocess import GFL_DECODER
from ..utils.predict import preprocess_meta
from .detector import _arange_like, _head_of, select_detections


def is_lite(detector: nn.Module) -> bool:
    """True when the detector's head is a :class:`~shufflenet_det.models.dense_heads.LiteGFLHead`."""
    from ..models.dense_heads import LiteGFLHead
    return isinstance(getattr(detector, 'bbox_head', None), LiteGFLHead)


def check_supported_lite(detector: nn.Module) -> None:
    """ValueError unless the lite detector's test settings can be exported (``nms`` type 'nms', ``nms_pre`` > 0)."""
    head = _head_of(detector)
    cfg = head.test_cfg or {}
    nms_cfg = cfg.get('nms', {}) or {}
    if nms_cfg.get('type', 'nms') != 'nms':
        raise ValueError(f"test_cfg.nms.type={nms_cfg.get('type')!r} is not supported (only 'nms')")
    if int(cfg.get('nms_pre', -1)) <= 0:
        raise ValueError(f"test_cfg.nms_pre must be > 0 for a lite detector export, got {cfg.get('nms_pre', -1)} "
                         '(the candidates per level form a fixed-size top-k in the graph)')
    if 'iou_threshold' not in nms_cfg:
        raise ValueError('test_cfg.nms.iou_threshold is missing')


def lite_postprocess_meta(detector: nn.Module) -> dict[str, Any]:
    """What ``runtime.postprocess.postprocess_gfl`` needs to decode the raw tensor (JSON-serialisable)."""
    check_supported_lite(detector)
    head = _head_of(detector)
    cfg = head.test_cfg
    return dict(
        decoder=GFL_DECODER,
        head=type(head).__name__,
        num_classes=int(head.num_classes),
        reg_max=int(head.reg_max),
        num_levels=len(head.strides),
        strides=[int(s) for s in head.strides],
        layout='(N, num_classes + 4 * (reg_max + 1)): sigmoid class scores, then the left/top/right/bottom distance '
               'distributions (logits, in strides); points (x, y) = (col, row) * stride, row-major, finest level '
               'first',
        test_cfg=dict(nms_pre=int(cfg['nms_pre']), score_thr=float(cfg.get('score_thr', 0.0)),
                      iou_threshold=float(cfg['nms']['iou_threshold']),
                      max_per_img=int(cfg.get('max_per_img', 100)),
                      min_bbox_size=float(cfg.get('min_bbox_size', -1))),
        preprocess=preprocess_meta(detector),
    )


def _points(feat: torch.Tensor, stride: float) -> torch.Tensor:
    """``(H * W, 2)`` points of a level map ``feat``, row-major (``MlvlPointGenerator`` with offset 0); built from
    tensor ops, so they follow the input size in a dynamic graph."""
    xs = _arange_like(feat[0, 0, 0, :]) * stride  # (W,)
    ys = _arange_like(feat[0, 0, :, 0]) * stride  # (H,)
    xx = xs[None, :] + torch.zeros_like(ys)[:, None]
    yy = ys[:, None] + torch.zeros_like(xs)[None, :]
    return torch.stack([xx, yy], dim=-1).reshape(-1, 2)


def gfl_candidates(head: nn.Module, maps: Sequence[torch.Tensor], img_hw: torch.Tensor,
                   nms_pre: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Decoded candidates of every level in graph form: ``boxes`` (B, K, 4), ``scores`` (B, K), ``labels`` (B, K).

    Per level, the ``nms_pre`` best (point, class) pairs (a fixed-size top-k: a level with fewer pairs is padded with
    zero scores, which any positive score threshold drops), their distance distributions integrated (softmax over
    the ``reg_max + 1`` bins, mean bin) times the stride around the point, boxes clipped to ``img_hw`` (H, W) as
    ``LiteGFLHead.predict_by_feat`` does. ``K = nms_pre * levels``. Used by :class:`LiteExportWrapper` and by the
    mmdeploy rewriter (:mod:`.mmdeploy_lite`).
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


class LiteExportWrapper(nn.Module):
    """See the module docstring. The detector is used as is (call ``switch_to_deploy`` on it beforehand)."""

    def __init__(self, detector: nn.Module, with_nms: bool = True) -> None:
        super().__init__()
        if not is_lite(detector):
            raise ValueError(f'{type(getattr(detector, "bbox_head", detector)).__name__} is not a LiteGFLHead')
        self.detector = detector
        self.with_nms = bool(with_nms)
        t = lite_postprocess_meta(detector)['test_cfg']
        self.nms_pre, self.score_thr, self.iou_thr = t['nms_pre'], t['score_thr'], t['iou_threshold']
        self.max_per_img, self.min_bbox_size = t['max_per_img'], t['min_bbox_size']

    @property
    def output_names(self) -> list[str]:
        """Names of the graph outputs, in order."""
        return ['num_dets', 'boxes', 'scores', 'labels'] if self.with_nms else ['output']

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Normalised images (B, 3, H, W) -> ``(output,)`` or ``num_dets, boxes, scores, labels``."""
        head = self.detector.bbox_head
        (maps,) = head(self.detector.extract_feat(x))
        if not self.with_nms:
            return (head.flatten_outputs(maps),)
        img_hw = torch._shape_as_tensor(x)[2:]
        boxes, scores, labels = gfl_candidates(head, maps, img_hw, self.nms_pre)
        return select_detections(boxes, scores, labels, score_thr=self.score_thr, iou_thr=self.iou_thr,
                                 max_per_img=self.max_per_img, min_bbox_size=self.min_bbox_size)
