"""mmdeploy 1.3.1 rewriter of PP-PicoDet's head (``PicoHead.predict_by_feat``); imports mmdeploy.

``PicoHead`` overrides ``predict_by_feat``, has one merged map per level and no box coder (distance distributions,
as the lite head), so mmdeploy's generic ``BaseDenseHead`` rewriter never applies to it and the eager method (mmcv NMS,
``InstanceData``) cannot be traced into an ONNX graph. :func:`pico_head__predict_by_feat` is mmdeploy's form of the
head, registered for the head's own method; it decodes as ``PicoHead.predict_by_feat`` (PaddleDetection's
``GFLHead.get_bboxes`` + ``MultiClassNMS``):

* per level the ``nms_pre`` points of highest best-class score, boxes decoded around the cell centres and clipped to
  the input (the Pico deploy form's :func:`.heads.pico.pico_points`);
* per class the ``nms_top_k`` best points (:func:`.heads.pico.class_top_k`): their scores stay in the class's column
  of the ``(B, P, C)`` score tensor, every other entry of the column is 0 - the same (point, class) pairs as the
  eager top-k of the pairs above ``score_thr`` (the NMS drops scores not above ``score_thr``);
* then, as the lite head's rewriter, the ``min_bbox_size`` filter, mmdeploy's ``multiclass_nms`` (per-class NMS at
  ``nms.iou_threshold``, Paddle's class-aware NMS) and the ``max_per_img`` best as mmdeploy's outputs ``dets``
  (B, D, 5) and ``labels`` (B, D) (:mod:`.mmdeploy_common`). mmdeploy's detector rewriter asks for boxes in input
  pixels (``rescale=False``): its backend model rescales them to the original picture.

The rewriter is registered on import of this module: through a deploy config's ``codebase_config.module`` (the
configs of ``configs/deploy`` list it next to :mod:`.mmdeploy_lite`) and through
:func:`.compat_mmdeploy.register_head_rewriters` (by :func:`.compat_mmdeploy.apply`, and by ``import shufflenet_det``
when mmdeploy is imported already).
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
from mmdeploy.core import FUNCTION_REWRITER
from torch import Tensor

from .compat_mmdeploy import PICO_PREDICT_BY_FEAT
from .heads.pico import class_top_k, pico_points
from .mmdeploy_common import head_test_settings, mmdeploy_detections


@FUNCTION_REWRITER.register_rewriter(func_name=PICO_PREDICT_BY_FEAT)
def pico_head__predict_by_feat(self: Any, outputs: Sequence[Tensor], batch_img_metas: Optional[list] = None,
                               cfg: Optional[dict] = None, rescale: bool = False, with_nms: bool = True,
                               **kwargs: Any) -> tuple[Tensor, Tensor]:
    """``(dets, labels)``: ``dets`` (B, D, 5) boxes + score in input pixels, ``labels`` (B, D); see module docstring.

    Without NMS: ``(boxes (B, P, 4), scores (B, P, C))``, the scores outside each class's ``nms_top_k`` set to 0.
    """
    cfg, nms_pre, img_hw = head_test_settings(self, cfg, batch_img_metas)
    boxes, scores = pico_points(self, outputs, img_hw, nms_pre)  # (B, P, 4), (B, P, C)
    nms_top_k = int(cfg.get('nms_top_k', -1))
    if 0 < nms_top_k < scores.shape[1]:  # P = levels * nms_pre: fixed when the graph is traced
        top_scores, top_idx = class_top_k(scores, nms_top_k)  # (B, C, t)
        chosen = torch.zeros_like(scores.permute(0, 2, 1)).scatter(2, top_idx, torch.ones_like(top_scores))
        scores = scores * chosen.permute(0, 2, 1)
    return mmdeploy_detections(boxes, scores, cfg, with_nms)
