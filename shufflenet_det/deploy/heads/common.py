"""What the built-in deploy forms share: graph-safe index ranges and the ``test_cfg`` checks and meta."""
from __future__ import annotations

from typing import Any

import torch


def arange_like(vec: torch.Tensor) -> torch.Tensor:
    """0, 1, ..., len(vec)-1 as float, built from tensor ops only (stays dynamic in a traced ONNX graph)."""
    return torch.ones_like(vec).cumsum(0) - 1


def check_nms_type(cfg: Any) -> None:
    """ValueError unless ``cfg.nms.type`` (a head's ``test_cfg``) is plain ``'nms'``, the one the graph runs."""
    nms_cfg = (cfg or {}).get('nms', {}) or {}
    if nms_cfg.get('type', 'nms') != 'nms':
        raise ValueError(f"test_cfg.nms.type={nms_cfg.get('type')!r} is not supported (only 'nms')")


def test_cfg_meta(cfg: Any) -> dict[str, Any]:
    """The ``test_cfg`` entry of the post-processing meta (mmdet's defaults where a key is missing)."""
    return dict(nms_pre=int(cfg.get('nms_pre', -1)), score_thr=float(cfg.get('score_thr', 0.0)),
                iou_threshold=float(cfg['nms'].get('iou_threshold', 0.5)),
                max_per_img=int(cfg.get('max_per_img', 100)),
                min_bbox_size=float(cfg.get('min_bbox_size', -1)))
