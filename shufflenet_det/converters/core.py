"""Weight conversion framework: a registry of per-source converters, strict verification, atomic save.

A converter is a function ``fn(state_dict, backbone_kwargs) -> backbone_state_dict`` registered for a
``(source, backbone_type)`` pair. :func:`convert_checkpoint` reads the input with the project's safe reader
(:func:`shufflenet_det.utils.checkpoint.read_state_dict`: ``weights_only=True``, ``state_dict`` / ``model`` nesting
and DataParallel's ``module.`` prefix removed), runs the converter, builds the target backbone, checks that every key
and shape fits it and loads it with ``strict=True``, and only then writes ``{'state_dict': ..., 'meta': ...}``
atomically (:func:`shufflenet_det.utils.io.save_torch_atomic`).

Whole-detector converters (``fn(checkpoint_object, detector) -> (state_dict, notes)``, registered per source with
:func:`register_detector_converter`) map a published detector checkpoint onto the detector of an mmdet config:
:func:`convert_detector_checkpoint` reads the file with inert stand-ins for pickled non-tensor state
(:func:`shufflenet_det.utils.checkpoint.read_checkpoint_inert`), builds the config's model, loads the result with
``strict=True`` and writes ``{'state_dict', 'meta'}`` (``meta.dataset_meta``: the class names mmdet's
``init_detector`` / ``DetInferencer`` read).

Errors: a file that cannot be read raises :class:`~shufflenet_det.utils.checkpoint.CheckpointError` naming it
(whatever the file holds - text, nothing, a truncated archive or pickle - the message says it is not a readable
PyTorch checkpoint); a checkpoint that does not match the requested source, type or variant
raises :class:`ConversionError` (a ``CheckpointError``). Writing over the input is refused before anything is read
(:func:`check_distinct_paths`).
"""
from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..utils.build import build_backbone
from ..utils.checkpoint import CheckpointError, check_state_dict_fits, extract_state_dict, read_state_dict
from ..utils.io import same_file, save_torch_atomic

ConverterFn = Callable[[dict[str, torch.Tensor], dict[str, Any]], dict[str, torch.Tensor]]
_CONVERTERS: dict[tuple[str, str], ConverterFn] = {}
#: ``(loaded checkpoint object, names of its inert stand-ins, target detector) -> (state dict, notes for the user)``
DetectorConverterFn = Callable[[Any, list[str], nn.Module], tuple[dict[str, torch.Tensor], list[str]]]
#: ``path -> (loaded object, names of its inert stand-ins)``: how a source's files are read (default: the project's
#: inert checkpoint reader; ``.pdparams`` files have their own restricted reader)
CheckpointReaderFn = Callable[[str | os.PathLike], tuple[Any, list[str]]]
_DETECTOR_CONVERTERS: dict[str, tuple[DetectorConverterFn, str, CheckpointReaderFn | None]] = {}


class ConversionError(CheckpointError):
    """Raised when a checkpoint does not match the requested source, backbone type or variant."""


def register_converter(source: str, backbone_type: str) -> Callable[[ConverterFn], ConverterFn]:
    """Decorator registering ``fn`` for ``(source, backbone_type)``.

    The registered (and returned) function takes any state dict the project's reader accepts: a DataParallel
    ``module.`` prefix is removed (:func:`shufflenet_det.utils.checkpoint.extract_state_dict`) before ``fn`` sees it.
    """
    def wrap(fn: ConverterFn) -> ConverterFn:
        key = (source, backbone_type)
        if key in _CONVERTERS:
            raise KeyError(f'a converter for {key} is already registered')

        @functools.wraps(fn)
        def convert(state_dict: dict[str, torch.Tensor], backbone_kwargs: dict[str, Any]) -> dict[str, torch.Tensor]:
            return fn(extract_state_dict(state_dict, f'{source} state dict'), backbone_kwargs)

        _CONVERTERS[key] = convert
        return convert
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


def target_backbone(backbone_type: str, backbone_kwargs: dict[str, Any]) -> nn.Module:
    """The backbone converted weights are for (:func:`shufflenet_det.utils.build.build_backbone`, no weights
    loaded); an unknown type or bad arguments become a :class:`ConversionError`."""
    try:
        return build_backbone(dict(backbone_kwargs, type=backbone_type))
    except (ValueError, TypeError, KeyError) as exc:
        args = ', '.join(f'{k}={v!r}' for k, v in backbone_kwargs.items())
        raise ConversionError(f'cannot build {backbone_type}({args}): {exc}') from exc


def check_distinct_paths(in_path: str | os.PathLike, out_path: str | os.PathLike) -> None:
    """ConversionError when ``out_path`` would write over ``in_path`` (however either is spelled)."""
    if same_file(in_path, out_path):
        raise ConversionError(f'OUT {str(out_path)!r} is the input file {str(in_path)!r} '
                              f'({Path(in_path).expanduser().resolve()}): refusing to write over the checkpoint being '
                              'converted; give another output path')


def convert_checkpoint(source: str, backbone_type: str, in_path: str | os.PathLike,
                       out_path: str | os.PathLike, backbone_kwargs: dict[str, Any]) -> Path:
    """Convert ``in_path`` and write a checkpoint the backbone loads with ``strict=True``; return ``out_path``."""
    converter = get_converter(source, backbone_type)
    check_distinct_paths(in_path, out_path)
    src_sd = read_state_dict(in_path, what='input checkpoint')
    new_sd = converter(src_sd, dict(backbone_kwargs))
    model = target_backbone(backbone_type, backbone_kwargs)
    try:
        check_state_dict_fits(model, new_sd, f'the {source} weights converted for {backbone_type}({backbone_kwargs})')
    except CheckpointError as exc:
        raise ConversionError(str(exc)) from exc
    model.load_state_dict(new_sd, strict=True)
    meta = dict(source=source, backbone=dict(type=backbone_type, **backbone_kwargs),
                input=os.path.basename(str(in_path)), converter='shufflenet_det.converters')
    return save_torch_atomic({'state_dict': new_sd, 'meta': meta}, out_path, what='output checkpoint')


# ---------------------------------------------------------------------------------------------- whole detectors
def register_detector_converter(source: str, refusal_hint: str = '', reader: CheckpointReaderFn | None = None,
                                ) -> Callable[[DetectorConverterFn], DetectorConverterFn]:
    """Decorator registering a whole-detector converter for ``source`` (``--src SOURCE --config CONFIG``);
    ``refusal_hint`` is appended when the safe reader refuses an input file (how to obtain a plain weight file);
    ``reader`` reads the source's files when they are not PyTorch checkpoints."""
    def wrap(fn: DetectorConverterFn) -> DetectorConverterFn:
        if source in _DETECTOR_CONVERTERS:
            raise KeyError(f'a detector converter for {source!r} is already registered')
        _DETECTOR_CONVERTERS[source] = (fn, refusal_hint, reader)
        return fn
    return wrap


def available_detector_converters() -> list[str]:
    """Sorted sources that convert a whole detector (``--config``)."""
    return sorted(_DETECTOR_CONVERTERS)


def get_detector_converter(source: str) -> tuple[DetectorConverterFn, str, CheckpointReaderFn | None]:
    """The converter of ``source``, its refusal hint and its reader (None: the inert checkpoint reader), or a
    ConversionError listing the available ones."""
    try:
        return _DETECTOR_CONVERTERS[source]
    except KeyError:
        raise ConversionError(f'no whole-detector converter for --src {source} (--config); available: '
                              f'{available_detector_converters()}') from None


def dataset_meta_for(cfg: Any, num_classes: int) -> dict[str, Any] | None:
    """Class names (and palette) for the output's ``meta.dataset_meta``: the config's test dataset ``metainfo``,
    else COCO's when the head has 80 classes, else None."""
    dataset = (cfg.get('test_dataloader') or {}).get('dataset') or {}
    metainfo = dataset.get('metainfo') if hasattr(dataset, 'get') else None
    if metainfo and len(metainfo.get('classes', ())) == num_classes:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dict(metainfo).items()}
    if num_classes == 80:
        from mmdet.datasets import CocoDataset
        return dict(classes=list(CocoDataset.METAINFO['classes']),
                    palette=[tuple(c) for c in CocoDataset.METAINFO['palette']])
    return None


def convert_detector_checkpoint(source: str, config: str | os.PathLike, in_path: str | os.PathLike,
                                out_path: str | os.PathLike,
                                cfg_options: dict[str, Any] | None = None) -> tuple[Path, list[str]]:
    """Convert the detector checkpoint ``in_path`` for the model of ``config``; write a checkpoint that model loads
    with ``strict=True``. Returns ``(out_path, notes)``: what was converted, dropped or checked."""
    from ..utils.build import build_detector
    from ..utils.checkpoint import read_checkpoint_inert

    fn, hint, reader = get_detector_converter(source)
    check_distinct_paths(in_path, out_path)
    detector = build_detector(config, cfg_options=cfg_options)
    if reader is not None:
        obj, unresolved = reader(in_path)
    else:
        obj, unresolved = read_checkpoint_inert(in_path, what='input checkpoint', hint=hint)
    try:
        state, notes = fn(obj, unresolved, detector)
        check_state_dict_fits(detector, state, f'the {source} weights converted for {config}')
    except CheckpointError as exc:  # ConversionError included: name the input file
        raise ConversionError(f'input checkpoint {str(in_path)!r}: {exc}') from exc
    detector.load_state_dict(state, strict=True)
    meta: dict[str, Any] = dict(source=source, config=os.path.basename(str(config)),
                                input=os.path.basename(str(in_path)), converter='shufflenet_det.converters',
                                notes=list(notes))
    num_classes = getattr(getattr(detector, 'bbox_head', None), 'num_classes', None)
    dataset_meta = dataset_meta_for(detector.cfg, int(num_classes)) if num_classes else None
    if dataset_meta:
        meta['dataset_meta'] = dataset_meta
    out = save_torch_atomic({'state_dict': state, 'meta': meta}, out_path, what='output checkpoint')
    return out, notes
