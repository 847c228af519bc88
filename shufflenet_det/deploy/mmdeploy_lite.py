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
* each candidate's score placed in its own class column of a ``(B, K, C)`` score tensor, then mmdeploy's
  ``multiclass_nms`` (exactly mmdet's class-aware NMS of (point, class) pairs) and the ``max_per_img`` best as
  mmdeploy's outputs ``dets`` (B, D, 5) and ``labels`` (B, D): :mod:`.mmdeploy_common`, shared with PicoHead's
  rewriter (:mod:`.mmdeploy_pico`).

The rewriter is registered on import of this module, which happens (a) through a deploy config's
``codebase_config.module = ['shufflenet_det.deploy.mmdeploy_lite']`` (mmdeploy's own hook for external rewriters;
the configs of ``configs/deploy`` list it) and (b) through :func:`.compat_mmdeploy.register_head_rewriters` (by
:func:`.compat_mmdeploy.apply`, and by ``import shufflenet_det`` when mmdeploy is imported already),
so that mmdeploy's own deploy configs work with a model config that only says ``custom_imports=['shufflenet_det']``.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

from mmdeploy.core import FUNCTION_REWRITER
from torch import Tensor

from .compat_mmdeploy import LITE_PREDICT_BY_FEAT
from .heads.gfl import gfl_candidates
from .mmdeploy_common import class_columns, head_test_settings, mmdeploy_detections


@FUNCTION_REWRITER.register_rewriter(func_name=LITE_PREDICT_BY_FEAT)
def lite_gfl_head__predict_by_feat(self: Any, outputs: Sequence[Tensor], batch_img_metas: Optional[list] = None,
                                   cfg: Optional[dict] = None, rescale: bool = False, with_nms: bool = True,
                                   **kwargs: Any) -> tuple[Tensor, Tensor]:
    """``(dets, labels)``: ``dets`` (B, D, 5) boxes + score in input pixels, ``labels`` (B, D); see module docstring.

    ``batch_img_metas[0]['img_shape']`` is the input size (ints for a static export, a tensor for a dynamic one:
    mmdeploy's detector rewriter sets it). Without NMS: ``(boxes (B, K, 4), scores (B, K, C))``.
    """
    cfg, nms_pre, img_hw = head_test_settings(self, cfg, batch_img_metas)
    boxes, scores, labels = gfl_candidates(self, outputs, img_hw, nms_pre)
    return mmdeploy_detections(boxes, class_columns(scores, labels, int(self.num_classes)), cfg, with_nms)
