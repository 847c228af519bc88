"""``--cfg-options`` merged into a config, every problem named: the option, its value and what is allowed.

mmengine's ``Config.merge_from_dict`` takes any value and fails, if at all, deep inside a later step (a comparison of
a string with a number, a Runner that trains zero epochs and evaluates an untrained model) or with a bare
``TypeError`` when a key is merged into a setting that is ``None`` (``model.backbone.init_cfg.type=Pretrained`` while
the config says ``init_cfg=None``). :func:`merge_cfg_options` - used by every config the tools load
(:func:`shufflenet_det.utils.build.load_config`, :func:`shufflenet_det.apps.launch.load_run_config`) - checks the
path of every option before merging and the values of the common numeric settings after, raising a ``ValueError``
subclass (the caller's, e.g. ``ConfigError``) that names ``--cfg-options KEY=VALUE``.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Mapping

#: Integer settings and their smallest allowed value (checked when ``--cfg-options`` sets them).
INT_OPTIONS: dict[str, tuple[int, str]] = {
    'train_cfg.max_epochs': (1, 'training epochs'),
    'train_cfg.max_iters': (1, 'training iterations'),
    'train_cfg.val_interval': (1, 'epochs (or iterations) between validations'),
    'model.bbox_head.num_classes': (1, 'object classes'),
    'model.roi_head.bbox_head.num_classes': (1, 'object classes'),
    **{f'{split}_dataloader.batch_size': (1, 'images per batch') for split in ('train', 'val', 'test')},
    **{f'{split}_dataloader.num_workers': (0, 'data loading processes') for split in ('train', 'val', 'test')},
}
#: Number settings that must be positive and finite.
POSITIVE_OPTIONS: dict[str, str] = {'optim_wrapper.optimizer.lr': 'learning rate'}
#: Last parts of keys whose settings are fractions in [0, 1] (scores after a sigmoid / softmax, IoU overlaps), in any
#: ``test_cfg`` / ``train_cfg`` of the model (``model.test_cfg.score_thr``, ``model.test_cfg.nms.iou_threshold``, ...).
FRACTION_SUFFIXES: dict[str, str] = {'score_thr': 'a score threshold', 'iou_threshold': 'an IoU threshold',
                                     'iou_thr': 'an IoU threshold'}
#: mmengine's key that replaces a setting instead of merging into it.
DELETE_KEY = '_delete_'


def _option(key: str, value: Any) -> str:
    return f'--cfg-options {key}={value!r}'


def _replacement_hint(prefix: str, key: str, value: Any) -> str:
    """What to write to set ``key`` inside ``prefix`` when the config has no dict there."""
    example = f'{prefix}.{DELETE_KEY}=True {key}={value}'
    if key.endswith('.type') and value == 'Pretrained':
        example += f' {prefix}.checkpoint=<checkpoint file>'
    return (f'give the whole dict instead: {prefix}.{DELETE_KEY}=True replaces {prefix} by the keys you set, e.g. '
            f'--cfg-options {example}')


def _root(cfg: Any) -> Any:
    """The settings of ``cfg`` as a Mapping (an mmengine ``Config`` keeps them in a ``ConfigDict``)."""
    return cfg if isinstance(cfg, Mapping) else getattr(cfg, '_cfg_dict', {})


def check_option_paths(cfg: Any, options: Mapping[str, Any], error: Callable[[str], Exception]) -> None:
    """Raise ``error(message)`` for an option whose dotted key runs through a setting that is not a dict (``None``, a
    number, a string) in ``cfg``: mmengine cannot merge into it."""
    for key, value in options.items():
        parts = key.split('.')
        node: Any = _root(cfg)
        for depth, part in enumerate(parts[:-1]):
            if isinstance(node, (list, tuple)) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            elif isinstance(node, Mapping) and part in node:
                node = node[part]
            else:
                break  # a new key: mmengine creates the dicts below it
            prefix = '.'.join(parts[:depth + 1])
            if isinstance(node, (Mapping, list, tuple)):
                continue
            if options.get(f'{prefix}.{DELETE_KEY}') is True:
                break
            raise error(f'{_option(key, value)}: {prefix} is {node!r} in the config, not a dict, so '
                        f'{key[len(prefix) + 1:]!r} cannot be set inside it; {_replacement_hint(prefix, key, value)}')


def _get(cfg: Any, key: str) -> tuple[bool, Any]:
    node: Any = _root(cfg)
    for part in key.split('.'):
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node


def check_option_values(cfg: Any, options: Mapping[str, Any], error: Callable[[str], Exception]) -> None:
    """Raise ``error(message)`` for a common numeric setting given by ``options`` with a value it cannot take
    (:data:`INT_OPTIONS`, :data:`FRACTION_SUFFIXES`, :data:`POSITIVE_OPTIONS`), read from the merged ``cfg``."""
    for key in options:
        if key in INT_OPTIONS:
            minimum, meaning = INT_OPTIONS[key]
            found, value = _get(cfg, key)
            if found and (not isinstance(value, int) or isinstance(value, bool) or value < minimum):
                raise error(f'{_option(key, options[key])}: {key} must be an int >= {minimum} ({meaning})')
        elif key.rsplit('.', 1)[-1] in FRACTION_SUFFIXES:
            found, value = _get(cfg, key)
            if found and (not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1):
                raise error(f'{_option(key, options[key])}: {key} must be a number in [0, 1] '
                            f"({FRACTION_SUFFIXES[key.rsplit('.', 1)[-1]]})")
        elif key in POSITIVE_OPTIONS:
            found, value = _get(cfg, key)
            if found and (not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value)
                          or value <= 0):
                raise error(f'{_option(key, options[key])}: {key} must be a positive number '
                            f'({POSITIVE_OPTIONS[key]})')


def merge_cfg_options(cfg: Any, options: Mapping[str, Any] | None, error: Callable[[str], Exception]) -> Any:
    """Merge ``options`` (``--cfg-options``) into the mmengine Config ``cfg`` in place and return it; ``error(message)``
    is raised for an option that cannot be merged or gives a checked setting a bad value (see module docstring)."""
    if not options:
        return cfg
    options = dict(options)
    check_option_paths(cfg, options, error)
    try:
        cfg.merge_from_dict(options)
    except (TypeError, KeyError, AttributeError, IndexError, ValueError) as exc:
        raise error(f'--cfg-options {" ".join(f"{k}={v!r}" for k, v in options.items())} cannot be merged into '
                    f'the config: {type(exc).__name__}: {exc}') from exc
    check_option_values(cfg, options, error)
    return cfg
