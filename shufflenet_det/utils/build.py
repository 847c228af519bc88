"""Configs and models from files: the one place that turns a config, a backbone spec or a checkpoint into a model.

* :func:`load_config` - an ``mmengine.Config`` from a path (``mmdet::`` and ``shufflenet_det::`` names too) with the
  registries initialised, ``--cfg-options`` merged; :class:`ConfigError` naming the file otherwise;
* :func:`build_backbone` / :func:`build_detector` - registered models, weights read safely and loaded strictly
  (:mod:`.checkpoint`), or their own initialisation without its log; :func:`build_model` - any registered model
  from its config dict, as configured (every model outside the model constructors is built here);
* :func:`prepare_for_export` - the reference copy and the deployable copy (BN folded) of a model, both in eval mode.
"""
from __future__ import annotations

import copy
import logging
import os
from pathlib import Path
from typing import Any, Mapping, cast

from torch import nn

from .checkpoint import load_weights
from .config_options import merge_cfg_options

#: Config name prefixes resolved inside installed packages (``<package>/.mim/configs/...``), as mmengine does.
PACKAGE_SCOPES = ('mmdet', 'shufflenet_det')
#: File types mmengine's ``Config.fromfile`` reads.
CONFIG_SUFFIXES = ('.py', '.json', '.yml', '.yaml')


class ConfigError(ValueError):
    """A config file that is missing, unreadable or describes no buildable model."""


def resolve_config_path(config: str | os.PathLike) -> str:
    """A config path; ``mmdet::x/y.py`` and ``shufflenet_det::x/y.py`` name configs shipped inside those packages."""
    config = str(config)
    scope, sep, rest = config.partition('::')
    if sep and scope in PACKAGE_SCOPES:
        import importlib.util
        spec = importlib.util.find_spec(scope)  # where the package is; nothing imported
        if spec is None or not spec.origin:
            raise ConfigError(f'config {config!r}: package {scope!r} is not installed')
        config = os.path.join(os.path.dirname(spec.origin), '.mim', 'configs', rest)
    return config


def load_config(config: Any, cfg_options: Mapping[str, Any] | None = None) -> Any:
    """``mmengine.Config`` of ``config`` (a path, a package-scoped name or a Config) with mmdet's registries ready.

    Raises :class:`ConfigError` naming the file when it is missing, is not a file or cannot be parsed, and naming the
    option when ``cfg_options`` cannot be merged or give a bad value (:mod:`.config_options`).
    """
    from mmdet.utils import register_all_modules
    from mmengine.config import Config

    # the package's own modules are registered already: importing this submodule ran shufflenet_det/__init__.py
    register_all_modules(init_default_scope=True)
    if isinstance(config, Config):
        cfg = copy.deepcopy(config)
    else:
        path = resolve_config_path(config)
        if not Path(path).exists():
            raise ConfigError(f'config {str(config)!r} does not exist')
        if not Path(path).is_file():
            raise ConfigError(f'config {str(config)!r} is not a file')
        if Path(path).suffix not in CONFIG_SUFFIXES:  # mmengine would raise a bare OSError
            raise ConfigError(f'config {str(config)!r} is not a config file: mmengine reads '
                              f'{", ".join(CONFIG_SUFFIXES)} files')
        try:
            cfg = Config.fromfile(path)
        except SyntaxError as exc:
            raise ConfigError(f'config {str(config)!r} is not valid Python: {exc.msg} (line {exc.lineno})') from exc
        except (FileNotFoundError, ImportError, KeyError, TypeError, ValueError, AttributeError, NameError) as exc:
            raise ConfigError(f'config {str(config)!r} cannot be loaded: {type(exc).__name__}: {exc}') from exc
    return merge_cfg_options(cfg, cfg_options, ConfigError)


def quiet_init_weights(model: nn.Module) -> None:
    """``model.init_weights()`` without mmengine's per-parameter INFO log (hundreds of lines per detector)."""
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        cast(Any, model).init_weights()  # nn.Module's __getattr__ is typed as returning a Tensor or a Module
    finally:
        logger.setLevel(level)


#: The package whose registered classes are the ShuffleNet-family backbones (:func:`registered_backbones`).
BACKBONES_PACKAGE = 'shufflenet_det.models.backbones'


def registered_backbones() -> list[str]:
    """The ShuffleNet-family backbone types of mmdet's MODELS (for error messages): the registered classes defined
    in :data:`BACKBONES_PACKAGE` (this bottom layer does not import the models; the package registered them)."""
    from mmdet.registry import MODELS
    return sorted(name for name, cls in MODELS.module_dict.items()
                  if isinstance(cls, type) and f'{cls.__module__}.'.startswith(f'{BACKBONES_PACKAGE}.'))


def build_model(model_cfg: Mapping[str, Any], *, init: bool = False, revert_sync_bn: bool = False) -> nn.Module:
    """Any registered model of mmdet's MODELS (a detector, a backbone, a part of one) from its config dict, built
    as configured: a deep copy of ``model_cfg`` is built, nothing is loaded, errors of the build (an unregistered
    type, a wrong argument) propagate unchanged.

    ``init``: run the model's own initialisation (:func:`quiet_init_weights`; its ``init_cfg`` applies);
    ``revert_sync_bn``: SyncBatchNorm layers become BatchNorm (mmengine's ``revert_sync_batchnorm``: a model run
    outside a distributed job). Models from files with weights: :func:`build_backbone`, :func:`build_detector`.
    """
    from mmdet.registry import MODELS
    model = MODELS.build(copy.deepcopy(dict(model_cfg)))
    if revert_sync_bn:
        from mmengine.model import revert_sync_batchnorm
        model = revert_sync_batchnorm(model)
    if init:
        quiet_init_weights(model)
    return model


def build_backbone(backbone_cfg: Mapping[str, Any], checkpoint: str | os.PathLike | None = None,
                   init: bool = False) -> nn.Module:
    """A registered backbone from ``dict(type=..., **kwargs)``.

    With ``checkpoint``: weights loaded strictly (a backbone checkpoint, or a detector checkpoint whose
    ``backbone.`` keys are used) and any ``init_cfg`` dropped; else ``init=True`` runs its own initialisation
    (``init_cfg`` kept). ValueError naming the type when it is not registered or its arguments are wrong.
    """
    from mmdet.registry import MODELS

    if not isinstance(backbone_cfg, Mapping) or 'type' not in backbone_cfg:
        raise ValueError(f'backbone config {backbone_cfg!r} must be a dict with a "type" key')
    cfg = copy.deepcopy(dict(backbone_cfg))
    if MODELS.get(cfg['type']) is None:
        raise ValueError(f"backbone type {cfg['type']!r} is not registered in mmdet's MODELS; ShuffleNet-family "
                         f'types: {registered_backbones()}')
    if checkpoint is not None:
        cfg['init_cfg'] = None
    try:
        model = MODELS.build(cfg)
    except TypeError as exc:  # an unknown keyword argument
        raise ValueError(f"cannot build backbone {cfg['type']!r}: {exc}") from exc
    if checkpoint is not None:
        load_weights(model, checkpoint, prefix='backbone.')
    elif init:
        quiet_init_weights(model)
    return model


def build_detector(config: Any, checkpoint: str | os.PathLike | None = None,
                   cfg_options: Mapping[str, Any] | None = None) -> nn.Module:
    """The detector of ``config`` (a path or a loaded Config) in eval mode, its config as ``model.cfg``.

    Weights come from ``checkpoint`` (every key and shape must match) or the model's own initialisation; the
    backbone's ``Pretrained`` init is dropped either way (nothing is downloaded or required).
    """
    from mmdet.registry import MODELS
    cfg = load_config(config, cfg_options)
    if 'model' not in cfg:
        raise ConfigError(f'config {getattr(cfg, "filename", config)!r} has no model')
    model_cfg = copy.deepcopy(cfg.model)
    if 'backbone' in model_cfg:
        model_cfg.backbone['init_cfg'] = None
    try:
        model = MODELS.build(model_cfg)
    except (KeyError, TypeError) as exc:  # an unregistered type, a missing or unknown argument
        text = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        raise ConfigError(f'config {getattr(cfg, "filename", config)!r}: cannot build its model: '
                          f'{type(exc).__name__}: {text}') from exc
    error = neck_channel_error(getattr(model, 'backbone', None), getattr(model, 'neck', None))
    if error:
        raise ConfigError(f'config {getattr(cfg, "filename", config)!r}: {error}')
    if checkpoint is not None:
        load_weights(model, checkpoint)
    else:
        quiet_init_weights(model)
    model.cfg = cfg
    return model.eval()


def neck_channel_error(backbone: Any, neck: Any) -> str | None:
    """What is wrong when the backbone's ``out_channels`` are not the neck's ``in_channels`` (None: they fit, or
    either is unknown - mmdet's ResNet has no ``out_channels``; ``neck`` is a module or its config dict).

    A mismatch otherwise surfaces as a conv shape error in the first forward pass (an export, a FLOP count, the
    first training step).
    """
    out_channels = getattr(backbone, 'out_channels', None)
    if isinstance(neck, (list, tuple, nn.Sequential)):
        neck = neck[0] if len(neck) else None
    in_channels = neck.get('in_channels') if isinstance(neck, Mapping) else getattr(neck, 'in_channels', None)
    if out_channels is None or in_channels is None:
        return None
    expected = [int(c) for c in out_channels]
    given = [int(c) for c in in_channels] if isinstance(in_channels, (list, tuple)) else [in_channels]
    if given == expected:
        return None
    out_indices = getattr(backbone, 'out_indices', None)
    return (f"model.backbone ({type(backbone).__name__}{f', out_indices={tuple(out_indices)}' if out_indices else ''})"
            f' outputs {expected} channels but model.neck.in_channels is {given}: set '
            f'model.neck.in_channels={expected} (or change the backbone so that its out_channels match)')


def switch_to_deploy(model: nn.Module) -> nn.Module:
    """Call ``switch_to_deploy()`` on ``model`` or, for a detector, on each submodule that has it (BN folded,
    training-only branches and never-run stages dropped); in place. Folding BN alone is
    :func:`shufflenet_det.models.layers.fold_batchnorm`."""
    if hasattr(model, 'switch_to_deploy'):
        if not getattr(model, 'deployed', False):
            cast(Any, model).switch_to_deploy()
        return model
    for m in list(model.modules()):
        if m is not model and hasattr(m, 'switch_to_deploy') and not getattr(m, 'deployed', False):
            cast(Any, m).switch_to_deploy()
    return model


def eval_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` in eval mode (not ``deepcopy(m).eval()``: some projects' ``train()`` overrides, e.g.
    mmpretrain's backbones, return None)."""
    copied = copy.deepcopy(model)
    copied.eval()
    return copied


def prepare_for_export(model: nn.Module, fold_bn: bool = True) -> tuple[nn.Module, nn.Module]:
    """``(reference, deployable)``: two deep copies in eval mode, the second with every BN folded (``fold_bn``).

    The caller's model is not changed. ValueError when ``fold_bn`` is asked of a model with nothing to fold it.
    """
    reference, deployable = eval_copy(model), eval_copy(model)
    if fold_bn:
        if not hasattr(deployable, 'switch_to_deploy') and \
                not any(hasattr(m, 'switch_to_deploy') for m in deployable.modules()):
            raise ValueError(f'{type(model).__name__} has no switch_to_deploy() anywhere; pass fold_bn=False')
        switch_to_deploy(deployable)
    deployable.eval()
    return reference, deployable
