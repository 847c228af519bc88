"""Check images of the exporters: normalised, padded input tensors as mmdet's test pipeline makes them.

* :func:`prepare_image` - a BGR image resized (keep ratio), normalised and padded to the export size;
* :func:`check_images` - check tensors from image files, the config's validation images, or generated pictures
  (:func:`synthetic_image`: coloured rectangles and discs on a noisy background).

How a model normalises its input comes from :func:`shufflenet_det.utils.predict.preprocess_meta`; image files are
read by the runtime's :func:`shufflenet_det.runtime.images.read_image` (re-exported here), as on a board.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ..runtime.images import read_image
from ..utils.predict import preprocess_meta

__all__ = ['check_images', 'prepare_image', 'read_image', 'synthetic_image', 'val_image_paths']


def prepare_image(img_bgr: np.ndarray, size: Sequence[int], meta: dict[str, Any]) -> tuple[torch.Tensor, float]:
    """Keep-ratio resize of a BGR uint8 image to fit ``size`` (H, W), normalise, pad bottom/right with 0.

    The order of mmdet's test pipeline (``Resize(keep_ratio=True)`` then ``DetDataPreprocessor``: normalise, then
    pad with 0); ``meta`` holds ``mean``, ``std`` and ``bgr_to_rgb`` (:func:`preprocess_meta`). Returns the
    (1, 3, H, W) tensor and the resize scale.
    """
    import mmcv
    h, w = int(size[0]), int(size[1])
    img, scale = mmcv.imrescale(img_bgr, (w, h), return_scale=True, backend='cv2')
    img = img[:h, :w].astype(np.float32)
    if meta.get('bgr_to_rgb', True):
        img = img[..., ::-1]
    img = (img - np.asarray(meta['mean'], np.float32)) / np.asarray(meta['std'], np.float32)
    out = np.zeros((h, w, 3), np.float32)
    out[:img.shape[0], :img.shape[1]] = img
    return torch.from_numpy(np.ascontiguousarray(out.transpose(2, 0, 1)))[None], float(scale)


def synthetic_image(height: int, width: int, seed: int) -> np.ndarray:
    """A BGR uint8 picture of filled rectangles and discs on a noisy background (deterministic in ``seed``)."""
    rng = np.random.default_rng(seed)
    img = rng.integers(90, 160, size=(height, width, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:height, :width]
    for _ in range(int(rng.integers(3, 7))):
        color = rng.integers(0, 256, size=3, dtype=np.uint8)
        s = int(rng.integers(min(height, width) // 10, min(height, width) // 3))
        cy, cx = int(rng.integers(s, height - s)), int(rng.integers(s, width - s))
        if rng.random() < 0.5:
            img[cy - s:cy + s, cx - s:cx + s] = color
        else:
            img[(yy - cy) ** 2 + (xx - cx) ** 2 <= s * s] = color
    return img


def val_image_paths(cfg: Any, limit: int) -> list[Path]:
    """Up to ``limit`` image files of the config's validation set (COCO json), [] when it is not on disk."""
    try:
        ds = cfg.val_dataloader.dataset
        root = Path(ds.get('data_root', '') or '')
        ann = root / ds.ann_file
        prefix = root / ds.get('data_prefix', {}).get('img', '')
        images = json.loads(ann.read_text())['images'] if ann.is_file() else []
    except (AttributeError, KeyError, ValueError, TypeError):
        return []
    paths = [prefix / im['file_name'] for im in images[:limit]]
    return [p for p in paths if p.is_file()]


def check_images(model: nn.Module | None, size: Sequence[int], images: Sequence[str | os.PathLike] | None = None,
                 num: int = 2, seed: int = 0, cfg: Any = None) -> tuple[list[torch.Tensor], list[str]]:
    """Normalised (1, 3, H, W) check tensors for ``model`` and a description of where each came from.

    Priority: the given ``images`` files; else up to ``num`` validation images of ``cfg`` when on disk; else ``num``
    generated pictures (seeds ``seed``, ``seed + 1``, ...).
    """
    meta = preprocess_meta(model)
    tensors, sources = [], []
    paths = [Path(p) for p in images] if images else (val_image_paths(cfg, num) if cfg is not None else [])
    for p in paths:
        tensors.append(prepare_image(read_image(p, 'check image'), size, meta)[0])
        sources.append(str(p))
    for i in range(max(0, num - len(tensors)) if not images else 0):
        tensors.append(prepare_image(synthetic_image(int(size[0]), int(size[1]), seed + i), size, meta)[0])
        sources.append(f'generated(seed={seed + i})')
    return tensors, sources
