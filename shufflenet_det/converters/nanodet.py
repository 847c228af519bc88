"""NanoDet-Plus (RangiLyu, github.com/RangiLyu/nanodet) detector checkpoints -> the lite detectors of this project.

``convert_weights.py --src nanodet --config CONFIG IN OUT`` converts either file nanodet publishes per model:

* the training checkpoint ``*_checkpoint.ckpt`` (PyTorch Lightning): ``state_dict`` holds the trained weights as
  ``model.*`` and their exponential moving average as ``avg_model.*``. nanodet evaluates (and its demo loads) the
  average, so ``avg_model.*`` is converted and ``model.*`` is only counted; the callbacks, loops and other pickled
  state are read as inert stand-ins (:func:`shufflenet_det.utils.checkpoint.read_checkpoint_inert`) and ignored;
* the inference weight file ``*.pth``: ``{'state_dict': ...}``, the averaged parameters and buffers under the
  names of the network itself (``backbone.*``, ``fpn.*``, ``head.*``, ``aux_fpn.*``, ``aux_head.*``), which is what
  nanodet's ``save_model_state`` writes; a ``model.`` or ``module.`` prefix is accepted too.

Both give the same weights. Module correspondence (NanoDet -> mmdet config): ``backbone`` -> ``backbone``
(torchvision's ShuffleNet V2 names, no ``conv5``: ``with_conv5=False``), ``fpn`` -> ``neck`` (GhostPAN),
``head`` -> ``bbox_head`` (NanoDetPlusHead -> LiteGFLHead), ``aux_fpn`` / ``aux_head`` -> ``aux_neck`` /
``aux_head`` (SimpleConvHead -> LiteAuxHead; training only: converted when the config has an ``aux_head``, so
fine-tuning starts from it, else dropped and reported). Inside, nanodet's conv blocks are renamed onto mmcv's:
``DepthwiseConvModule`` (``depthwise``, ``dwnorm``, ``pointwise``, ``pwnorm``) -> ``DepthwiseSeparableConvModule``
(``depthwise_conv.conv`` / ``.bn``, ``pointwise_conv.conv`` / ``.bn``), the ghost modules' ``Sequential`` indices ->
``ConvModule`` names. ``head.distribution_project.project`` (and ``head.project`` where a nanodet version has it)
are the integral's fixed bins, not weights: each must equal ``linspace(0, reg_max, reg_max + 1)``, and the target
keeps its own. Every other key must map one to one, with the target's shape: anything unknown or missing is an error.
"""
from __future__ import annotations

import re
from typing import Any, Mapping

import torch
from torch import nn

from ..utils.checkpoint import UnresolvedObject
from .core import ConversionError, register_detector_converter

#: Where a refused file's weights can be obtained instead.
WEIGHT_FILE_HINT = ('; use the weight file nanodet publishes next to the checkpoint (e.g. nanodet-plus-m_320.pth, the '
                    '"Weight" link of its model zoo) or, where nanodet is installed, re-save the weights: '
                    "torch.save({'state_dict': torch.load(CKPT)['state_dict']}, 'weights.pth')")
#: Top-level modules: target prefix -> nanodet prefix.
PREFIXES = {'backbone.': 'backbone.', 'neck.': 'fpn.', 'bbox_head.': 'head.', 'aux_neck.': 'aux_fpn.',
            'aux_head.': 'aux_head.'}
#: Training-only nanodet modules (the assign guidance module).
AUX_PREFIXES = ('aux_fpn.', 'aux_head.')
#: mmcv module names -> nanodet's, applied in order to the part of a target key after its top-level prefix.
RENAMES = [
    (r'\.depthwise_conv\.conv\.', '.depthwise.'),
    (r'\.depthwise_conv\.bn\.', '.dwnorm.'),
    (r'\.pointwise_conv\.conv\.', '.pointwise.'),
    (r'\.pointwise_conv\.bn\.', '.pwnorm.'),
    (r'\.(primary_conv|cheap_operation)\.conv\.', r'.\1.0.'),
    (r'\.(primary_conv|cheap_operation)\.bn\.', r'.\1.1.'),
    (r'\.shortcut\.0\.conv\.', '.shortcut.0.'),
    (r'\.shortcut\.0\.bn\.', '.shortcut.1.'),
    (r'\.shortcut\.1\.conv\.', '.shortcut.2.'),
    (r'\.shortcut\.1\.bn\.', '.shortcut.3.'),
    (r'\.conv_dw\.conv\.', '.conv_dw.'),
    (r'\.conv_dw\.bn\.', '.bn_dw.'),
]
#: Target buffers that are not weights: the GFL integral's bins (checked against the source's, then kept).
FIXED_TARGET_KEYS = ('bbox_head.integral.project',)
#: The source's copies of those bins.
FIXED_SOURCE_KEYS = ('head.distribution_project.project', 'head.project')


def nanodet_key(target_key: str) -> str:
    """The nanodet name of the mmdet parameter or buffer ``target_key``."""
    for t_prefix, s_prefix in PREFIXES.items():
        if target_key.startswith(t_prefix):
            rest = '.' + target_key[len(t_prefix):]
            for pattern, repl in RENAMES:
                rest = re.sub(pattern, repl, rest)
            return s_prefix + rest[1:]
    raise ConversionError(f'internal error: the target key {target_key!r} has no nanodet counterpart')


def _strip_prefix(state: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def select_weights(obj: Any) -> tuple[dict[str, Any], list[str]]:
    """The network's state dict inside a loaded nanodet file (see the module docstring) and notes on the choice."""
    state = obj.get('state_dict') if isinstance(obj, Mapping) and isinstance(obj.get('state_dict'), Mapping) \
        else obj
    if not isinstance(state, Mapping) or not state:
        raise ConversionError('the input holds no state dict (expected a nanodet *_checkpoint.ckpt or weight .pth)')
    bad_keys = [k for k in state if not isinstance(k, str)]
    if bad_keys:
        raise ConversionError(f'the state dict has keys that are not names: {bad_keys[:3]}')
    lightning = isinstance(obj, Mapping) and 'pytorch-lightning_version' in obj
    averaged = _strip_prefix(state, 'avg_model.')
    if averaged:
        trained = _strip_prefix(state, 'model.')
        other = sorted(k for k in state if not k.startswith(('avg_model.', 'model.')))
        if other:
            raise ConversionError(f'the checkpoint has {len(other)} keys outside model.* / avg_model.*: {other[:6]}')
        return averaged, [f'converted the exponential moving average avg_model.* ({len(averaged)} tensors: the weights '
                          f'nanodet evaluates); the {len(trained)} trained weights model.* are not used']
    for prefix in ('model.', 'module.'):
        if all(k.startswith(prefix) for k in state):
            note = (f'no avg_model.* in the checkpoint: converted {prefix}* ({len(state)} tensors), as nanodet\'s '
                    'loader does' if lightning or prefix == 'model.' else f'removed the {prefix} prefix')
            return _strip_prefix(state, prefix), [note]
    return dict(state), [f'converted the weight file ({len(state)} tensors)']


def _check_tensors(state: Mapping[str, Any], unresolved: list[str]) -> None:
    bad = {k: v for k, v in state.items() if not isinstance(v, torch.Tensor)}
    if bad:
        key, value = next(iter(bad.items()))
        kind = (f'an inert stand-in for {value.qualified_name}' if isinstance(value, UnresolvedObject)
                else type(value).__name__)
        raise ConversionError(f'{len(bad)} entries of the state dict are not tensors (e.g. {key!r}: {kind}); '
                              f'never-imported classes in the file: {unresolved}{WEIGHT_FILE_HINT}')


def _check_bins(source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> list[str]:
    notes = []
    expected = target[FIXED_TARGET_KEYS[0]]
    for key in FIXED_SOURCE_KEYS:
        if key not in source:
            continue
        value = source[key]
        # exact: both are torch.linspace(0, reg_max, reg_max + 1), whose values are small integers (exact in float)
        if value.shape != expected.shape or not torch.equal(value.to(expected.dtype), expected):
            raise ConversionError(f'{key} = {value.tolist()} is not the integral bins linspace(0, {len(expected) - 1}, '
                                  f'{len(expected)}) = {expected.tolist()} of the config\'s head (reg_max '
                                  f'{len(expected) - 1}): another reg_max, or not a NanoDet-Plus checkpoint')
        notes.append(f'{key} checked: the fixed integral bins linspace(0, {len(expected) - 1}, {len(expected)}), '
                     'not a weight')
    if FIXED_SOURCE_KEYS[0] not in source:
        raise ConversionError(f'{FIXED_SOURCE_KEYS[0]} is missing: not a NanoDet-Plus checkpoint')
    return notes


@register_detector_converter('nanodet', refusal_hint=WEIGHT_FILE_HINT)
def convert_nanodet(obj: Any, unresolved: list[str], detector: nn.Module) -> tuple[dict[str, torch.Tensor],
                                                                                     list[str]]:
    """A NanoDet-Plus checkpoint object (a loaded ``.ckpt`` or ``.pth``) -> the state dict of ``detector``."""
    source, notes = select_weights(obj)
    _check_tensors(source, unresolved)
    target = detector.state_dict()
    notes += _check_bins(source, target)
    with_aux = hasattr(detector, 'aux_head')
    aux_keys = sorted(k for k in source if k.startswith(AUX_PREFIXES))
    if not aux_keys and with_aux:
        raise ConversionError('the checkpoint has no auxiliary branch (aux_fpn.*, aux_head.*) but the config has an '
                              'aux_head: convert with --cfg-options model.aux_head=None')
    key_map = {t: nanodet_key(t) for t in target if t not in FIXED_TARGET_KEYS}
    if len(set(key_map.values())) != len(key_map):
        raise ConversionError('internal error: several target keys map to one nanodet key')
    wanted = set(key_map.values())
    skipped = set(FIXED_SOURCE_KEYS) | (set() if with_aux else set(aux_keys))
    unknown = sorted(k for k in source if k not in wanted and k not in skipped)
    missing = sorted(s for s in key_map.values() if s not in source)
    if unknown or missing:
        raise ConversionError(f'{len(missing)} missing keys {missing[:6]}, {len(unknown)} unknown keys {unknown[:6]}: '
                              'is the checkpoint a NanoDet-Plus model and CONFIG its lite config?')
    out: dict[str, torch.Tensor] = {}
    for t_key, ref in target.items():
        if t_key in FIXED_TARGET_KEYS:
            out[t_key] = ref.detach().clone()
            continue
        s_key = key_map[t_key]
        value = source[s_key]
        if tuple(value.shape) != tuple(ref.shape):
            raise ConversionError(f'{s_key!r} has shape {tuple(value.shape)} but the config\'s {t_key!r} has '
                                  f'{tuple(ref.shape)}: the checkpoint is another model (width, reg_max or number '
                                  'of classes); pick the config of that model')
        out[t_key] = value.detach().clone().to(ref.dtype)
    if with_aux:
        notes.append(f'converted the training-only auxiliary branch ({len(aux_keys)} tensors -> aux_neck, aux_head)')
    elif aux_keys:
        notes.append(f'dropped the training-only auxiliary branch (aux_fpn.*, aux_head.*: {len(aux_keys)} tensors): '
                     'the config has no aux_head')
    if unresolved:
        notes.append(f'pickled non-tensor state read as inert stand-ins, never imported: {", ".join(unresolved)}')
    return out, notes
