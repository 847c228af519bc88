"""Weight conversion framework: safe loading, a registry of per-source converters, strict verification, atomic save.

A converter is a function ``fn(state_dict, backbone_kwargs) -> backbone_state_dict`` registered for a
``(source, backbone_type)`` pair. :func:`convert_checkpoint` loads the input with ``weights_only=True``, runs the
converter, builds the target backbone, checks the result with ``load_state_dict(strict=True)`` and only then writes
``{'state_dict': ..., 'meta': ...}`` through a temporary file renamed into place.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch

ConverterFn = Callable[[dict[str, torch.Tensor], dict[str, Any]], dict[str, torch.Tensor]]
_CONVERTERS: dict[tuple[str, str], ConverterFn] = {}


class ConversionError(ValueError):
    """Raised when a checkpoint does not match the requested source, backbone type or variant."""


def register_converter(source: str, backbone_type: str) -> Callable[[ConverterFn], ConverterFn]:
    """Decorator registering ``fn`` for ``(source, backbone_type)``."""
    def wrap(fn: ConverterFn) -> ConverterFn:
        key = (source, backbone_type)
        if key in _CONVERTERS:
            raise KeyError(f'a converter for {key} is already registered')
        _CONVERTERS[key] = fn
        return fn
    return wrap


def available_converters() -> list[tuple[str, str]]:
    """Sorted ``(source, backbone_type)`` pairs that can be converted."""
    return sorted(_CONVERTERS)


def get_converter(source: str, backbone_type: str) -> ConverterFn:
    """The converter for the pair, or a ConversionError listing the available ones."""
    try:
        return _CONVERTERS[(source, backbone_type)]
    except KeyError:
        raise ConversionError(f'no converter for --src {source} --type {backbone_type}; available: '
                              f'{available_converters()}') from None


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a checkpoint safely (``weights_only=True``) and return its flat tensor state dict.

    Accepts a bare state dict or one nested under ``state_dict`` / ``model``.
    """
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f'input checkpoint {str(path)!r} does not exist or is not a file')
    try:
        obj = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable/unsafe file is reported the same way
        raise ConversionError(f'cannot read checkpoint {str(path)!r} with weights_only=True: {exc}') from exc
    if isinstance(obj, dict):
        for key in ('state_dict', 'model'):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ConversionError(f'{str(path)!r} does not hold a state dict of tensors')
    return dict(obj)


def check_keys(actual: set[str], expected: set[str], what: str) -> None:
    """Fail loudly (listing a few keys) when ``actual`` and ``expected`` differ."""
    missing, unexpected = sorted(expected - actual), sorted(actual - expected)
    if missing or unexpected:
        raise ConversionError(f'{what}: {len(missing)} missing keys {missing[:8]}, '
                              f'{len(unexpected)} unexpected keys {unexpected[:8]}')


def save_atomic(obj: Any, out_path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file in the target folder, then rename: no half-written file is left."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{out_path.name}.', suffix='.tmp', dir=out_path.parent)
    os.close(fd)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the result the permissions of a normal file
        torch.save(obj, tmp)
        os.replace(tmp, out_path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return out_path


def build_backbone(backbone_type: str, backbone_kwargs: dict[str, Any]) -> torch.nn.Module:
    """Build a registered backbone from mmdet's MODELS (importing the project registers it)."""
    import shufflenet_det  # noqa: F401
    from mmdet.registry import MODELS
    return MODELS.build(dict(type=backbone_type, **backbone_kwargs))


def convert_checkpoint(source: str, backbone_type: str, in_path: str | os.PathLike,
                       out_path: str | os.PathLike, backbone_kwargs: dict[str, Any]) -> Path:
    """Convert ``in_path`` and write a checkpoint the backbone loads with ``strict=True``; return ``out_path``."""
    converter = get_converter(source, backbone_type)
    src_sd = load_state_dict_file(in_path)
    new_sd = converter(src_sd, dict(backbone_kwargs))
    model = build_backbone(backbone_type, backbone_kwargs)
    check_keys(set(new_sd), set(model.state_dict()), f'converted {source} weights vs {backbone_type}'
               f'({backbone_kwargs})')
    for key, value in model.state_dict().items():
        if tuple(new_sd[key].shape) != tuple(value.shape):
            raise ConversionError(f'{key}: converted shape {tuple(new_sd[key].shape)} does not match the '
                                  f'{backbone_type}({backbone_kwargs}) shape {tuple(value.shape)}; wrong variant?')
    model.load_state_dict(new_sd, strict=True)
    meta = dict(source=source, backbone=dict(type=backbone_type, **backbone_kwargs),
                input=os.path.basename(str(in_path)), converter='shufflenet_det.converters')
    return save_atomic({'state_dict': new_sd, 'meta': meta}, out_path)
