"""Key-map helpers shared by the converters: the target backbone's state dict, renaming a source state dict onto its
keys, checking keys and shapes with messages that name the culprit, and permuting tensors along channel axes.

A converter describes a source layout by a function ``target_key -> source_key`` (built from the module names of the
target backbone, so the map follows the same architecture table the backbone is built from) and a pattern of source
keys it may drop (classifier heads). :func:`rename_to_target` does the rest.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Iterable, Optional

import torch

from .core import ConversionError, target_backbone

BN_VECTORS = ('weight', 'bias', 'running_mean', 'running_var')
BN_COUNTER = 'num_batches_tracked'


def target_state_dict(backbone_type: str, backbone_kwargs: dict[str, Any]) -> dict[str, torch.Tensor]:
    """State dict of the target backbone (the reference for keys and shapes); build errors become ConversionError."""
    return target_backbone(backbone_type, dict(backbone_kwargs)).state_dict()


def require_kwarg(backbone_kwargs: dict[str, Any], name: str, allowed: str, default: str, what: str,
                  hint: str = '') -> None:
    """Refuse a backbone argument value the source layout cannot be converted to (e.g. another formulation)."""
    value = backbone_kwargs.get(name, default)
    if value != allowed:
        raise ConversionError(f'{what}: {name}={value!r} is not supported for this source; it needs '
                              f'{name}={allowed!r}{hint}')


def rename_to_target(src: dict[str, torch.Tensor],
                     target: dict[str, torch.Tensor],
                     source_key: Callable[[str], str],
                     ignore: Optional[str],
                     what: str) -> dict[str, torch.Tensor]:
    """Return ``{target_key: src[source_key(target_key)]}`` after strict key and shape checks.

    * every source key must be mapped or match the ``ignore`` regex (``re.fullmatch``), else it is reported as
      unknown; every mapped key must be present, except BN ``num_batches_tracked`` counters, which old checkpoints
      lack and which are then filled with 0 (the value PyTorch itself assumes for such checkpoints);
    * each tensor must have the target shape: a mismatch means the checkpoint is another variant (width/groups).
    """
    ignore_re = re.compile(ignore) if ignore else None
    key_map = {t: source_key(t) for t in target}
    wanted = set(key_map.values())
    if len(wanted) != len(key_map):
        raise ConversionError(f'{what}: internal error, several backbone keys map to one source key')
    unknown = sorted(k for k in src if k not in wanted and not (ignore_re and ignore_re.fullmatch(k)))
    missing = sorted(s for t, s in key_map.items() if s not in src and not t.endswith('.' + BN_COUNTER))
    if unknown or missing:
        raise ConversionError(f'{what}: {len(missing)} missing keys {missing[:8]}, {len(unknown)} unknown keys '
                              f'{unknown[:8]}; is this the right --src / --type / variant?')
    out: dict[str, torch.Tensor] = {}
    for t_key, s_key in key_map.items():
        ref = target[t_key]
        if s_key not in src:  # a BN counter absent from an old checkpoint
            out[t_key] = torch.zeros_like(ref)
            continue
        value = src[s_key]
        if tuple(value.shape) != tuple(ref.shape):
            raise ConversionError(f'{what}: {s_key!r} has shape {tuple(value.shape)} but the target {t_key!r} has '
                                  f'{tuple(ref.shape)}: the checkpoint is another variant (check --widen-factor '
                                  f'/ --groups)')
        out[t_key] = value.detach().clone().to(ref.dtype) if value.is_floating_point() else value.clone()
    return out


def permute_out(sd: dict[str, torch.Tensor], conv: str, bn: Optional[str], index: torch.Tensor) -> None:
    """Reorder the output channels of conv ``conv`` (its ``weight`` rows) and of the BN ``bn`` that follows it."""
    sd[f'{conv}.weight'] = sd[f'{conv}.weight'][index].contiguous()
    if bn is not None:
        for name in BN_VECTORS:
            sd[f'{bn}.{name}'] = sd[f'{bn}.{name}'][index].contiguous()


def permute_in(sd: dict[str, torch.Tensor], conv: str, index: torch.Tensor) -> None:
    """Reorder the input channels of a dense (``groups=1``) conv ``conv`` (its ``weight`` columns)."""
    sd[f'{conv}.weight'] = sd[f'{conv}.weight'][:, index].contiguous()


def stage_units(target: dict[str, torch.Tensor], stage_names: Iterable[str]) -> list[list[str]]:
    """Unit prefixes ``stageN.i`` of each stage, in order, read from the target keys."""
    out = []
    for name in stage_names:
        pat = re.compile(rf'{re.escape(name)}\.(\d+)\.')
        ids = sorted({int(m.group(1)) for k in target for m in [pat.match(k)] if m})
        if not ids:
            raise ConversionError(f'target backbone has no units in {name!r}')
        out.append([f'{name}.{i}' for i in ids])
    return out

