"""Argument checks shared by the backbones: each raises ``ValueError`` naming the argument and what is allowed."""
from __future__ import annotations

from typing import Any, Iterable, Optional, Sequence

from mmengine.registry import MODELS as MMENGINE_MODELS


def check_choice(name: str, value: Any, allowed: Iterable[Any]) -> Any:
    """Return ``value`` if it is one of ``allowed``; else ValueError listing them."""
    allowed = list(allowed)
    if value not in allowed:
        raise ValueError(f'{name}={value!r} is not supported; allowed values: {allowed}')
    return value


def check_unit_stride(in_channels: int, out_channels: int, stride: int) -> None:
    """A ShuffleNet unit has stride 1 or 2, and a stride-1 unit keeps its width (its shortcut passes channels on)."""
    check_choice('stride', stride, (1, 2))
    if stride == 1 and in_channels != out_channels:
        raise ValueError(f'a stride-1 unit needs in_channels == out_channels, got {in_channels} and {out_channels}')


def check_out_indices(out_indices: Any, num_outputs: int) -> tuple[int, ...]:
    """Non-empty, unique, sorted ints in ``[0, num_outputs)``."""
    allowed = list(range(num_outputs))
    if isinstance(out_indices, int) or not isinstance(out_indices, Sequence) or len(out_indices) == 0:
        raise ValueError(f'out_indices={out_indices!r} must be a non-empty sequence of ints from {allowed}')
    bad = [i for i in out_indices if not isinstance(i, int) or isinstance(i, bool) or i not in allowed]
    if bad or len(set(out_indices)) != len(out_indices):
        raise ValueError(f'out_indices={tuple(out_indices)!r} is invalid: each index must be unique and one of '
                         f'{allowed} (0 = stride 4, 1 = 8, 2 = 16, 3 = 32'
                         f'{", 4 = last 1x1 conv" if num_outputs > 4 else ""})')
    return tuple(sorted(out_indices))


def check_frozen_stages(frozen_stages: Any, num_outputs: int) -> int:
    """-1 (nothing frozen) up to ``num_outputs - 1``."""
    allowed = list(range(-1, num_outputs))
    if not isinstance(frozen_stages, int) or isinstance(frozen_stages, bool) or frozen_stages not in allowed:
        raise ValueError(f'frozen_stages={frozen_stages!r} is not supported; allowed values: {allowed} '
                         '(-1 freezes nothing, k freezes the stem and every output stage up to index k)')
    return frozen_stages


def check_cfg_type(name: str, cfg: Optional[dict], required: bool) -> Optional[dict]:
    """A config dict whose ``type`` names a layer registered in mmengine/mmcv's MODELS registry."""
    if cfg is None:
        if required:
            raise ValueError(f'{name} must be a dict with a "type" key, got None')
        return None
    if not isinstance(cfg, dict) or 'type' not in cfg:
        raise ValueError(f'{name}={cfg!r} must be a dict with a "type" key')
    layer_type = cfg['type']
    if isinstance(layer_type, str):
        import mmcv.cnn  # noqa: F401  (registers mmcv's conv/norm/activation layers)
        if MMENGINE_MODELS.get(layer_type) is None:
            known = sorted(k for k in MMENGINE_MODELS.module_dict)
            raise ValueError(f'{name}: type {layer_type!r} is not a registered layer; registered types: {known}')
    return dict(cfg)
