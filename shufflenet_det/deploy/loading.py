"""Build the models and check images that the export and benchmark tools work on.

* :func:`build_detector` - an mmdet detector from a config file, weights loaded safely (``weights_only=True``,
  ``strict=True``) from an mmengine checkpoint or a bare state dict;
* :func:`build_backbone` - a registered backbone from ``type`` + keyword arguments, or the backbone of a detector
  config, optionally with weights (a backbone checkpoint, or a detector checkpoint whose ``backbone.`` keys are used);
* :func:`prepare_image` / :func:`check_images` - normalised, padded input tensors from image files, the config's
  validation images, or generated pictures (coloured shapes on a noisy background).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn


def resolve_config_path(config: str | os.PathLike) -> str:
    """A config path; ``mmdet::retinanet/x.py`` names a config shipped inside the mmdet package."""
    config = str(config)
    if config.startswith('mmdet::'):
        import mmdet
        config = os.path.join(os.path.dirname(mmdet.__file__), '.mim', 'configs', config[len('mmdet::'):])
    return config


def load_config(config: str | os.PathLike, cfg_options: dict | None = None) -> Any:
    """``mmengine.Config`` of ``config`` (ValueError if missing) with mmdet's registries initialised."""
    config = resolve_config_path(config)
    if not Path(config).is_file():
        raise ValueError(f'config {str(config)!r} does not exist')
    import shufflenet_det  # noqa: F401  - registers the backbones, applies the compat fixes
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    register_all_modules(init_default_scope=True)
    cfg = Config.fromfile(str(config))
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg


def load_state_dict_safe(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint read with ``weights_only=True`` (mmengine Runner checkpoints or bare state dicts)."""
    import shufflenet_det  # noqa: F401  - lets weights_only=True read mmengine Runner checkpoints
    if not Path(path).is_file():
        raise ValueError(f'checkpoint {str(path)!r} does not exist')
    try:
        obj = torch.load(str(path), map_location='cpu', weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f'cannot read checkpoint {str(path)!r} with weights_only=True: {exc}') from exc
    if isinstance(obj, dict):
        for key in ('state_dict', 'model'):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f'{str(path)!r} holds no state dict of tensors')
    return {k[len('module.'):] if k.startswith('module.') else k: v for k, v in obj.items()}


def build_detector(config: str | os.PathLike, checkpoint: str | os.PathLike | None = None,
                   cfg_options: dict | None = None) -> nn.Module:
    """Detector of ``config`` in eval mode; weights from ``checkpoint`` (strict) or its own init."""
    from mmdet.registry import MODELS
    cfg = load_config(config, cfg_options)
    model_cfg = cfg.model.copy()
    _drop_pretrained(model_cfg)
    model = MODELS.build(model_cfg)
    if checkpoint is not None:
        model.load_state_dict(load_state_dict_safe(checkpoint), strict=True)
    else:
        quiet_init_weights(model)
    model.cfg = cfg
    return model.eval()


def _drop_pretrained(model_cfg: Any) -> None:
    """No ``Pretrained`` init when weights come from elsewhere (or are random): nothing is downloaded or required."""
    if 'backbone' in model_cfg:
        model_cfg.backbone['init_cfg'] = None


def build_backbone(backbone_type: str | None = None, backbone_args: dict | None = None,
                   config: str | os.PathLike | None = None, checkpoint: str | os.PathLike | None = None) -> nn.Module:
    """A backbone from ``type`` + args, or ``config``'s ``model.backbone``; weights from ``checkpoint`` (strict)."""
    import shufflenet_det  # noqa: F401
    from mmdet.registry import MODELS
    if config is not None:
        cfg = load_config(config)
        bb_cfg = dict(cfg.model.backbone)
        if backbone_args:
            bb_cfg.update(backbone_args)
    elif backbone_type is not None:
        bb_cfg = dict(type=backbone_type, **(backbone_args or {}))
    else:
        raise ValueError('give a backbone type or a config')
    bb_cfg['init_cfg'] = None
    try:
        model = MODELS.build(bb_cfg)
    except KeyError as exc:
        raise ValueError(f'cannot build backbone {bb_cfg.get("type")!r}: {exc}') from exc
    if checkpoint is not None:
        sd = load_state_dict_safe(checkpoint)
        if any(k.startswith('backbone.') for k in sd):
            sd = {k[len('backbone.'):]: v for k, v in sd.items() if k.startswith('backbone.')}
        model.load_state_dict(sd, strict=True)
    else:
        quiet_init_weights(model)
    return model.eval()


def quiet_init_weights(model: nn.Module) -> None:
    """``model.init_weights()`` without mmengine's per-parameter INFO log (hundreds of lines per detector)."""
    import logging

    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        model.init_weights()
    finally:
        logger.setLevel(level)


def preprocess_meta(detector: nn.Module | None) -> dict[str, Any]:
    """Mean, std and channel order of the detector's data preprocessor (ImageNet RGB defaults without one)."""
    pre = getattr(detector, 'data_preprocessor', None)
    mean = getattr(pre, 'mean', None)
    std = getattr(pre, 'std', None)
    return dict(mean=mean.flatten().tolist() if mean is not None else [123.675, 116.28, 103.53],
                std=std.flatten().tolist() if std is not None else [58.395, 57.12, 57.375],
                bgr_to_rgb=bool(getattr(pre, '_channel_conversion', True)))


def prepare_image(img_bgr: np.ndarray, size: Sequence[int], meta: dict[str, Any]) -> tuple[torch.Tensor, float]:
    """Keep-ratio resize of a BGR uint8 image to fit ``size`` (H, W), normalise, pad bottom/right with 0.

    The order of mmdet's test pipeline (``Resize(keep_ratio=True)`` then ``DetDataPreprocessor``: normalise, then
    pad with 0). Returns the (1, 3, H, W) tensor and the resize scale.
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


def check_images(detector: nn.Module | None, size: Sequence[int], images: Sequence[str | os.PathLike] | None = None,
                 num: int = 2, seed: int = 0, cfg: Any = None) -> tuple[list[torch.Tensor], list[str]]:
    """Normalised (1, 3, H, W) check tensors and a description of where each came from.

    Priority: the given ``images`` files; else up to ``num`` validation images of ``cfg`` when on disk; else ``num``
    generated pictures.
    """
    import mmcv
    meta = preprocess_meta(detector)
    tensors, sources = [], []
    paths = [Path(p) for p in images] if images else (val_image_paths(cfg, num) if cfg is not None else [])
    for p in paths:
        if not p.is_file():
            raise ValueError(f'check image {str(p)!r} does not exist')
        tensors.append(prepare_image(mmcv.imread(str(p)), size, meta)[0])
        sources.append(str(p))
    for i in range(max(0, num - len(tensors)) if not images else 0):
        tensors.append(prepare_image(synthetic_image(int(size[0]), int(size[1]), seed + i), size, meta)[0])
        sources.append(f'generated(seed={seed + i})')
    return tensors, sources
