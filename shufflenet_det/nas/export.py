"""The result of a search as an ordinary detector: a config with ``backbone=dict(type='DetNAS', arch=dict(...))`` and
the weights the found path inherits from the supernet, as a checkpoint that loads strictly into that config's model.

The config is the ``subnet_config`` of the search (an ordinary detector config, e.g. the published encoding's) - or,
without one, the search config itself minus the supernet training pieces (path sampler hook,
``find_unused_parameters``, the ``nas_search`` section) - with its backbone replaced: a ``DetNASSupernet`` backbone
keeps its arguments (``out_indices``, ``norm_cfg`` ...) and becomes ``DetNAS`` with the found ``arch``; a ``DetNAS``
backbone gets the found ``arch``. ``init_cfg`` is dropped (the ImageNet weights of another encoding do not fit). The
config is written fully resolved (``Config.pretty_text``: no ``_base_`` to find), so it trains from anywhere.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Mapping, Optional

import torch

from ..utils.io import atomic_outputs

SUPERNET_ONLY_KEYS = ('space', 'path')
HOOK_TYPE = 'UniformPathSamplerHook'


def subnet_detector_config(search_cfg: Any, arch: Mapping[str, Any], subnet_config: Optional[str] = None) -> Any:
    """The mmengine Config of the found detector (see module docstring); ValueError when the base config's backbone
    is neither a ``DetNASSupernet`` nor a ``DetNAS``."""
    from mmengine.config import Config

    from ..utils.build import load_config

    base = load_config(subnet_config) if subnet_config else Config(copy.deepcopy(search_cfg._cfg_dict.to_dict()))
    where = f'subnet_config {subnet_config!r}' if subnet_config else 'the search config'
    if 'model' not in base or 'backbone' not in base.model:
        raise ValueError(f'{where} has no model.backbone to put the found encoding in')
    backbone = copy.deepcopy(dict(base.model.backbone))
    kind = backbone.get('type')
    if kind == 'DetNASSupernet':
        for key in SUPERNET_ONLY_KEYS:
            backbone.pop(key, None)
    elif kind != 'DetNAS':
        raise ValueError(f"{where}: model.backbone.type is {kind!r}; the found encoding goes into a 'DetNAS' (or "
                         "'DetNASSupernet') backbone")
    backbone.update(type='DetNAS', arch=copy.deepcopy(dict(arch)), init_cfg=None)
    base.model.backbone = backbone
    hooks = [h for h in base.get('custom_hooks', None) or [] if not (isinstance(h, Mapping) and h.get('type')
                                                                    == HOOK_TYPE)]
    base.custom_hooks = hooks
    for key in ('nas_search', 'find_unused_parameters'):
        if key in base:
            base.pop(key)
    base.load_from = None
    return base


def config_text(cfg: Any, header: str) -> str:
    """``cfg`` as a self-contained Python config, ``header`` as leading comment lines."""
    comment = ''.join(f'# {line}'.rstrip() + '\n' for line in header.splitlines())
    return comment + '\n' + cfg.pretty_text


def write_subnet(cfg: Any, state_dict: Mapping[str, torch.Tensor], meta: Mapping[str, Any], config_path: Path,
                 checkpoint_path: Path, header: str, extra: Optional[Mapping[Path, str]] = None) -> None:
    """Check that ``state_dict`` loads strictly into ``cfg``'s model, then write the config, the checkpoint
    (``{'state_dict': ..., 'meta': ...}``) and the ``extra`` text files together, atomically."""
    from ..utils.build import build_model
    from ..utils.checkpoint import check_state_dict_fits

    model = build_model(cfg.model, revert_sync_bn=True)
    check_state_dict_fits(model, state_dict, 'the subnet weights inherited from the supernet')
    text = config_text(cfg, header)
    extra = dict(extra or {})
    paths = [config_path, checkpoint_path, *extra]
    with atomic_outputs(paths, 'search result') as tmps:
        tmps[0].write_text(text, encoding='utf-8')
        torch.save({'state_dict': dict(state_dict), 'meta': dict(meta)}, tmps[1])
        for tmp, content in zip(tmps[2:], extra.values()):
            tmp.write_text(content, encoding='utf-8')
