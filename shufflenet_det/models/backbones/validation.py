"""Argument checks shared by the backbones: each raises ``ValueError`` naming the argument and what is allowed."""
from __future__ import annotations

from typing import Any, Iterable, Optional, Sequence

from mmengine.registry import MODELS as MMENGINE_MODELS


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_choice(name: str, value: Any, allowed: Iterable[Any]) -> Any:
    """Return ``value`` if it is one of ``allowed``; else ValueError listing them.

    Equality alone is not enough: ``3.0 == 3`` and ``True == 1``, but a float group count or a bool width would
    reach ``nn.Conv2d`` as the wrong type. Where every allowed value is an int, the value must be an int too; a bool
    is only accepted where a bool is allowed.
    """
    allowed = list(allowed)
    if isinstance(value, bool) and not any(isinstance(a, bool) for a in allowed):
        raise ValueError(f'{name}={value!r} is not supported: a bool, expected one of {allowed}')
    if allowed and all(_is_int(a) for a in allowed) and not _is_int(value):
        raise ValueError(f'{name}={value!r} must be an int ({type(value).__name__} given); allowed values: {allowed}')
    try:
        ok = value in allowed
    except TypeError:  # e.g. an array, whose == is elementwise
        ok = False
    if not ok:
        raise ValueError(f'{name}={value!r} is not supported; allowed values: {allowed}')
    return value


def check_unit_stride(in_channels: int, out_channels: int, stride: int) -> None:
    """A ShuffleNet unit has stride 1 or 2, and a stride-1 unit keeps its width (its shortcut passes channels on)."""
    check_choice('stride', stride, (1, 2))
    if stride == 1 and in_channels != out_channels:
        raise ValueError(f'a stride-1 unit needs in_channels == out_channels, got {in_channels} and {out_channels}')


def check_out_indices(out_indices: Any, num_outputs: int) -> tuple[int, ...]:
    """Non-empty, unique ints in ``[0, num_outputs)``; returned sorted.

    The backbone's outputs always come in increasing stride order (what every mmdet neck expects), so indices given
    in another order, e.g. ``(3, 1)``, are accepted and the backbone's ``out_indices`` attribute is the sorted tuple;
    ``out_channels`` / ``out_strides`` and the outputs follow that attribute. Duplicates are refused.
    """
    allowed = list(range(num_outputs))
    meaning = (f'0 = stride 4, 1 = 8, 2 = 16, 3 = 32{", 4 = last 1x1 conv" if num_outputs > 4 else ""}')
    if isinstance(out_indices, (int, str)) or not isinstance(out_indices, Sequence) or len(out_indices) == 0:
        raise ValueError(f'out_indices={out_indices!r} must be a non-empty sequence of ints from {allowed} '
                         f'({meaning})')
    bad = [i for i in out_indices if not _is_int(i) or i not in allowed]
    if bad:
        raise ValueError(f'out_indices={tuple(out_indices)!r} is invalid: {bad} not among the output indices '
                         f'{allowed} of this backbone ({meaning})')
    duplicates = sorted({i for i in out_indices if list(out_indices).count(i) > 1})
    if duplicates:
        raise ValueError(f'out_indices={tuple(out_indices)!r} is invalid: {duplicates} given more than once; each '
                         f'index must be unique ({meaning})')
    return tuple(sorted(out_indices))


def check_frozen_stages(frozen_stages: Any, num_outputs: int) -> int:
    """-1 (nothing frozen) up to ``num_outputs - 1``."""
    allowed = list(range(-1, num_outputs))
    if not isinstance(frozen_stages, int) or isinstance(frozen_stages, bool) or frozen_stages not in allowed:
        raise ValueError(f'frozen_stages={frozen_stages!r} is not supported; allowed values: {allowed} '
                         '(-1 freezes nothing, k freezes the stem and every output stage up to index k)')
    return frozen_stages


#: The usual layer types of each config argument, named in error messages (any layer registered in mmengine's
#: MODELS registry, mmcv's included, is accepted).
COMMON_LAYER_TYPES = {
    'conv_cfg': ('Conv2d', 'Conv', 'ConvWS'),
    'norm_cfg': ('BN', 'SyncBN', 'GN', 'LN', 'IN'),
    'act_cfg': ('ReLU', 'ReLU6', 'LeakyReLU', 'PReLU', 'HSwish', 'HSigmoid', 'Swish', 'SiLU', 'GELU', 'Sigmoid'),
}

#: Norm layers that need an argument besides the channel count, and an example of it.
NORM_REQUIRED_ARGS = {'GN': ('num_groups', "dict(type='GN', num_groups=4)")}


def check_cfg_type(name: str, cfg: Optional[dict], required: bool) -> Optional[dict]:
    """A config dict whose ``type`` names a layer registered in mmengine/mmcv's MODELS registry.

    The message for an unknown type names the common types of ``name`` (:data:`COMMON_LAYER_TYPES`) and close
    matches among the registered ones; a norm layer that needs an argument (GN's ``num_groups``) must have it.
    """
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
            import difflib
            close = difflib.get_close_matches(layer_type, list(MMENGINE_MODELS.module_dict), n=3, cutoff=0.6)
            hint = f'; did you mean {close}?' if close else ''
            common = COMMON_LAYER_TYPES.get(name)
            usual = f'common {name} types: {list(common)} (any layer registered in mmcv / mmengine MODELS works)' \
                if common else 'it must be a layer registered in mmcv / mmengine MODELS'
            raise ValueError(f'{name}: type {layer_type!r} is not a registered layer{hint}; {usual}')
    if name == 'norm_cfg' and layer_type in NORM_REQUIRED_ARGS:
        arg, example = NORM_REQUIRED_ARGS[layer_type]
        if arg not in cfg:
            raise ValueError(f'norm_cfg={cfg!r} needs {arg}, e.g. {example} ({arg} must divide the channel count of '
                             'every normalised layer)')
    return dict(cfg)
