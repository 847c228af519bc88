"""mmdeploy 1.3.1 rewriter of the lite detectors' head (``LiteGFLHead.predict_by_feat``); imports mmdeploy.

mmdeploy exports an mmdet single-stage detector by rewriting ``SingleStageDetector.forward`` to call
``bbox_head.predict`` and ``BaseDenseHead.predict_by_feat`` to decode ``cls_scores`` / ``bbox_preds`` lists with the
head's ``bbox_coder``. ``LiteGFLHead`` overrides ``predict_by_feat`` and has one merged map per level and no box
coder (its boxes are distance distributions, Generalized Focal Loss, Li et al., arXiv 2006.04388), so the generic
rewriter never applies to it and the eager method (mmcv NMS, ``InstanceData``) cannot be traced into an ONNX graph.
:func:`lite_gfl_head__predict_by_feat` is mmdeploy's form of the head, registered for the head's own method:

* candidates exactly as mmdet's ``predict_by_feat`` makes them (the GFL deploy form's
  :func:`.heads.gfl.gfl_candidates`: per level the ``nms_pre`` best (point, class) pairs, softmax integral times
  the stride, boxes clipped to the input), boxes not larger than ``min_bbox_size`` scored 0;
* each candidate's score placed in its own class column of a ``(B, K, C)`` score tensor, so mmdeploy's
  ``multiclass_nms`` (per-class ONNX ``NonMaxSuppression`` with the head's ``score_thr`` and ``nms.iou_threshold``;
  TensorRT's batched NMS plugin on that backend) is exactly mmdet's class-aware NMS of (point, class) pairs;
* mmdeploy's outputs ``dets`` (B, D, 5) and ``labels`` (B, D): the ``max_per_img`` best, sorted by score
  (``keep_top_k`` is applied as a slice after sorting, so a picture with fewer detections than ``max_per_img`` does
  not make ONNX Runtime's TopK fail; rows with score 0 are padding, which mmdeploy's backend model drops).

The rewriter is registered on import of this module, which happens (a) through a deploy config's
``codebase_config.module = ['shufflenet_det.deploy.mmdeploy_lite']`` (mmdeploy's own hook for external rewriters;
the configs of ``configs/deploy`` list it) and (b) through :func:`.compat_mmdeploy.apply` when mmdeploy is imported,
so that mmdeploy's own deploy configs work with a model config that only says ``custom_imports=['shufflenet_det']``.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
from mmdeploy.core import FUNCTION_REWRITER
from mmdeploy.mmcv.ops import multiclass_nms
from torch import Tensor

from .compat_mmdeploy import LITE_PREDICT_BY_FEAT
from .heads.gfl import gfl_candidates


@FUNCTION_REWRITER.register_rewriter(func_name=LITE_PREDICT_BY_FEAT)
def lite_gfl_head__predict_by_feat(self: Any, outputs: Sequence[Tensor], batch_img_metas: Optional[list] = None,
                                   cfg: Optional[dict] = None, rescale: bool = False, with_nms: bool = True,
                                   **kwargs: Any) -> tuple[Tensor, Tensor]:
    """``(dets, labels)``: ``dets`` (B, D, 5) boxes + score in input pixels, ``labels`` (B, D); see module docstring.

    ``batch_img_metas[0]['img_shape']`` is the input size (ints for a static export, a tensor for a dynamic one:
    mmdeploy's detector rewriter sets it). Without NMS: ``(boxes (B, K, 4), scores (B, K, C))``.
    """
    cfg = self.test_cfg if cfg is None else cfg
    nms_pre = int(cfg.get('nms_pre', -1))
    if nms_pre <= 0:
        raise ValueError(f'LiteGFLHead export needs test_cfg.nms_pre > 0, got {nms_pre}')
    if batch_img_metas is None:
        raise ValueError('LiteGFLHead export needs batch_img_metas with img_shape')
    img_shape = batch_img_metas[0]['img_shape']
    img_hw = img_shape[:2] if isinstance(img_shape, Tensor) else torch.tensor([float(v) for v in img_shape[:2]])
    boxes, scores, labels = gfl_candidates(self, outputs, img_hw, nms_pre)
    min_size = float(cfg.get('min_bbox_size', -1))
    if min_size >= 0:
        wh = boxes[..., 2:] - boxes[..., :2]
        scores = torch.where((wh > min_size).all(dim=-1), scores, torch.zeros_like(scores))
    classes = torch.arange(int(self.num_classes), device=labels.device)
    class_scores = (labels.unsqueeze(-1) == classes).to(scores.dtype) * scores.unsqueeze(-1)  # (B, K, C)
    if not with_nms:
        return boxes, class_scores
    nms_cfg = cfg.get('nms', {}) or {}
    dets, det_labels = multiclass_nms(
        boxes, class_scores, max_output_boxes_per_class=int(boxes.shape[1]),
        iou_threshold=float(nms_cfg.get('iou_threshold', 0.5)), score_threshold=float(cfg.get('score_thr', 0.0)),
        pre_top_k=-1, keep_top_k=-1, nms_type=nms_cfg.get('type', 'nms'))
    keep = int(cfg.get('max_per_img', 100))
    return dets[:, :keep], det_labels[:, :keep]
