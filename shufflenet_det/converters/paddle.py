"""PaddleDetection (github.com/PaddlePaddle/PaddleDetection) ``.pdparams`` -> the PicoDet detectors of this project.

``convert_weights.py --src paddle --config CONFIG IN OUT`` converts the weight file PaddleDetection publishes per model
(``picodet_s_320_coco.pdparams``, ...).

The file format (``paddle.save`` of a state dict, Paddle 2.x): a pickle (protocol 2 to 4) of a ``dict`` parameter
name -> ``numpy.ndarray``, possibly with

* ``StructuredToParameterName@@``: a ``dict`` structured name (the key) -> Paddle's internal parameter name
  (``conv2d_0.w_0``); bookkeeping, not a weight: dropped (reported);
* ``UnpackBigParamInfor@@`` (protocol 2 / 3 only, arrays over 2**30 bytes): ``{name: {'OriginShape': shape, 'slices':
  [names]}}``, the array split into ``name@@.i`` slices; reassembled as Paddle's loader does.

:func:`read_pdparams` reads it without PaddlePaddle and without running anything from the file: a restricted unpickler
resolves only the globals numpy arrays need (array reconstruction, dtypes, scalars - under numpy 1.x's
``numpy.core`` and numpy 2.x's ``numpy._core`` names), ``_codecs.encode`` (protocol 2's bytes) and
``collections.OrderedDict``; any other global is refused with a
:class:`~shufflenet_det.utils.checkpoint.CheckpointError` naming the file and the global, before anything is called.

Key correspondence (Paddle -> mmdet config): ``backbone.`` -> ``backbone.``, ``neck.`` -> ``neck.``, ``head.`` ->
``bbox_head.``; inside, the tables of the module docstrings (ESNet, CSPPAN, PicoHead) in code: :data:`BUILTIN_RENAMES`,
``[(regex on the module key, replacement giving the Paddle key), ...]`` applied in order to the key relative to the
component; a component class may declare its own as ``PADDLE_RENAMES``. Then Paddle's BatchNorm
names: ``running_mean`` -> ``_mean``, ``running_var`` -> ``_variance``. ``num_batches_tracked`` counters (Paddle has
none) are set to 0, as PyTorch assumes for checkpoints without them. ``nn.Linear`` weights are transposed (Paddle
stores ``[in, out]``). Paddle keys that are not weights of the network: ``head.distribution_project.project`` (the
integral's fixed bins: must equal ``linspace(0, reg_max, reg_max + 1)``; the target keeps its own, if it has any) and
``head.p{3..7}_feat.scale_reg`` (the scales of ``GFLHead``, which ``PicoHead`` inherits but never applies: dropped,
reported). Every other key must map one to one with the target's shape: unknown and missing keys are an error listing
them, and a shape mismatch names both keys.
"""
from __future__ import annotations

import codecs
import collections
import os
import pickle
import re
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import nn

from ..utils.checkpoint import CheckpointError
from .core import (
    ConversionError,
    register_detector_converter,
)

#: Entries ``paddle.save`` adds next to the weights.
NAME_TABLE_KEY = 'StructuredToParameterName@@'
BIG_PARAM_KEY = 'UnpackBigParamInfor@@'
#: Target top-level prefix -> Paddle's (``ppdet.modeling.architectures.PicoDet``: backbone, neck, head).
PREFIXES = {'backbone.': 'backbone.', 'neck.': 'neck.', 'bbox_head.': 'head.'}
#: mmcv / PyTorch BatchNorm buffer names -> Paddle's.
BN_RENAMES = ((r'\.running_mean$', '._mean'), (r'\.running_var$', '._variance'))
BN_COUNTER = 'num_batches_tracked'
#: Paddle keys of the integral's fixed bins (GFLHead.distribution_project), and target keys holding the same bins.
PADDLE_BINS_KEY = 'head.distribution_project.project'
TARGET_BINS_KEYS = ('bbox_head.integral.project', 'bbox_head.distribution_project.project')
#: GFLHead's per-level scales, registered by the base class of PicoHead and unused by it.
UNUSED_SCALES = re.compile(r'head\.p\d+_feat\.scale_reg')
REFUSAL_HINT = ('; .pdparams files are read by shufflenet_det.converters.paddle.read_pdparams '
                '(convert_weights.py --src paddle --config CONFIG IN OUT), not by torch.load')


# ---------------------------------------------------------------------------------------------- safe reading
def _numpy_globals() -> dict[str, Any]:
    """``"module.name" -> object`` for the globals a pickle of numpy arrays names, under numpy 1.x and 2.x names."""
    try:
        from numpy._core import multiarray, numeric  # numpy >= 2
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray, numeric  # type: ignore[no-redef]
    allowed: dict[str, Any] = {'numpy.ndarray': np.ndarray, 'numpy.dtype': np.dtype,
                               '_codecs.encode': codecs.encode,  # protocol 2 pickles bytes as encode(str, 'latin1')
                               'collections.OrderedDict': collections.OrderedDict}
    for alias in ('numpy.core', 'numpy._core'):
        allowed[f'{alias}.multiarray._reconstruct'] = multiarray._reconstruct
        allowed[f'{alias}.multiarray.scalar'] = multiarray.scalar
        frombuffer = getattr(numeric, '_frombuffer', None)  # protocol 5's in-band buffers
        if frombuffer is not None:
            allowed[f'{alias}.numeric._frombuffer'] = frombuffer
    dtypes = getattr(np, 'dtypes', None)  # numpy >= 1.25 pickles dtypes through their classes
    if dtypes is not None:
        for name in dir(dtypes):
            if name.endswith('DType'):
                allowed[f'numpy.dtypes.{name}'] = getattr(dtypes, name)
    return allowed


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Resolves only the globals of :func:`_numpy_globals`; every other one raises ``pickle.UnpicklingError``.

    Every callable a pickle can run is reached through :meth:`find_class` (``GLOBAL`` / ``STACK_GLOBAL``), so refusing
    names there refuses ``os.system``, ``builtins.eval`` / ``open`` and ``paddle``'s own reducers (``eval('data',
    ...)`` of ``LoDTensor``) alike. Persistent ids (torch's storages) are refused by the base class.
    """

    _allowed: dict[str, Any] | None = None

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102
        if NumpyOnlyUnpickler._allowed is None:
            NumpyOnlyUnpickler._allowed = _numpy_globals()
        qualified = f'{module}.{name}'
        if qualified in NumpyOnlyUnpickler._allowed:
            return NumpyOnlyUnpickler._allowed[qualified]
        raise pickle.UnpicklingError(f'refusing global {qualified!r}: only numpy arrays and plain containers are '
                                     'allowed in a .pdparams file')


def _pack_big_params(state: dict[str, Any], what: str) -> None:
    """Reassemble the arrays ``paddle.save`` split into slices (``UnpackBigParamInfor@@``), in place."""
    info = state.pop(BIG_PARAM_KEY, None)
    if info is None:
        return
    try:
        for key, entry in dict(info).items():
            slices = [state.pop(part) for part in entry['slices']]
            state[key] = np.concatenate(slices).reshape(tuple(entry['OriginShape']))
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f'{what}: a malformed {BIG_PARAM_KEY} entry ({type(exc).__name__}: {exc})') from exc


def read_pdparams(path: str | os.PathLike, what: str = '.pdparams file') -> dict[str, np.ndarray]:
    """The weights of a PaddlePaddle ``.pdparams`` file: ``{name: ndarray}`` (see the module docstring).

    Nothing from the file is imported or executed; a refused global, an unreadable file or content that is not a
    dict of arrays raise :class:`CheckpointError` naming the file.
    """
    p = Path(path).expanduser()
    label = f'{what} {str(path)!r}'
    if not p.is_file():
        raise CheckpointError(f'{label} does not exist' if not p.exists() else f'{label} is not a file')
    if p.stat().st_size == 0:
        raise CheckpointError(f'{label} is empty (0 bytes)')
    try:
        with open(p, 'rb') as f:
            obj = NumpyOnlyUnpickler(f, encoding='latin1').load()
    except pickle.UnpicklingError as exc:
        if 'refusing global' in str(exc):
            raise CheckpointError(f'{label} was refused by the safe .pdparams reader: {exc}; nothing from it was '
                                  'run') from exc
        raise CheckpointError(f'{label} is not a readable .pdparams file (truncated or another format): {exc}') \
            from exc
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - any way an untrusted file fails to parse means "unreadable"
        raise CheckpointError(f'{label} is not a readable .pdparams file (truncated or another format): '
                              f'{type(exc).__name__}: {str(exc)[:200]}') from exc
    if not isinstance(obj, dict):
        raise CheckpointError(f'{label} holds a {type(obj).__name__}, not a dict of parameter arrays')
    state = dict(obj)
    state.pop(NAME_TABLE_KEY, None)
    _pack_big_params(state, label)
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, np.ndarray)]
    if bad:
        raise CheckpointError(f'{label}: {len(bad)} entries are not named numpy arrays (e.g. {bad[:3]})')
    odd = [f'{k} ({v.dtype})' for k, v in state.items() if v.dtype.kind not in 'biuf']
    if odd:  # object / string / complex arrays are no weights (an object array would hold arbitrary values)
        raise CheckpointError(f'{label}: {len(odd)} arrays are not numeric (e.g. {odd[:3]})')
    if not state:
        raise CheckpointError(f'{label} holds no parameters')
    return state


# ---------------------------------------------------------------------------------------------- key map
Rename = tuple[str, str | Callable[[re.Match[str]], str]]


def _esnet_unit(m: re.Match[str]) -> str:
    layer = '_se' if m.group(3) == 'se' else f'_{m.group(3)}.{"_conv" if m.group(4) == "0" else "_batch_norm"}'
    return f'{m.group(1)}_{int(m.group(2)) + 1}.{layer}.'


#: ppdet's ShuffleNetV2 unit layers <- torchvision's ``Sequential`` indices: (first unit of a stage, branch, index).
_SHUFFLE_LAYERS = {(True, '1', '0'): '_conv_dw_1._conv', (True, '1', '1'): '_conv_dw_1._batch_norm',
                   (True, '1', '2'): '_conv_linear_1._conv', (True, '1', '3'): '_conv_linear_1._batch_norm',
                   (True, '2', '0'): '_conv_pw_2._conv', (True, '2', '1'): '_conv_pw_2._batch_norm',
                   (True, '2', '3'): '_conv_dw_2._conv', (True, '2', '4'): '_conv_dw_2._batch_norm',
                   (True, '2', '5'): '_conv_linear_2._conv', (True, '2', '6'): '_conv_linear_2._batch_norm',
                   (False, '2', '0'): '_conv_pw._conv', (False, '2', '1'): '_conv_pw._batch_norm',
                   (False, '2', '3'): '_conv_dw._conv', (False, '2', '4'): '_conv_dw._batch_norm',
                   (False, '2', '5'): '_conv_linear._conv', (False, '2', '6'): '_conv_linear._batch_norm'}


def _shuffle_unit(m: re.Match[str]) -> str:
    layer = _SHUFFLE_LAYERS.get((m.group(2) == '0', m.group(3), m.group(4)))
    if layer is None:
        return m.group(0)  # not a layer of Paddle's units: left as is, so reported as missing
    return f'{m.group(1)}_{int(m.group(2)) + 1}.{layer}.'


#: The tables of the module docstrings, as ``(regex on the module key, replacement)`` applied in order to the key
#: relative to the component (the BN statistics are renamed afterwards for every component):
#: ESNet (``shufflenet_det.models.backbones.esnet``): ``conv1.0`` / ``conv1.1`` -> ``_conv1._conv`` /
#: ``_conv1._batch_norm``; ``stage<S>.<J-1>.<L>.0`` / ``.1`` -> ``<S>_<J>._<L>._conv`` / ``._batch_norm``;
#: ``stage<S>.<J-1>.se`` -> ``<S>_<J>._se``. CSPPAN: the same names. PicoHead: the per-level ModuleLists
#: ``conv_feat.cls_conv_dw.<s>.<i>`` / ``head_cls.<s>`` -> Paddle's ``conv_feat.cls_conv_dw<s>.<i>`` / ``head_cls<s>``.
BUILTIN_RENAMES: dict[str, list[Rename]] = {
    'ESNet': [(r'^conv1\.0\.', '_conv1._conv.'), (r'^conv1\.1\.', '_conv1._batch_norm.'),
              (r'^stage(\d)\.(\d+)\.(se)\.()', _esnet_unit), (r'^stage(\d)\.(\d+)\.(\w+)\.([01])\.', _esnet_unit)],
    # ppdet's ShuffleNetV2 (picodet_shufflenetv2_*): the same formulation as torchvision's (split, concat, shuffle
    # in 2 groups; no shuffle permutation to undo), ``_conv1`` and units ``<S>_<J>`` as ESNet's
    'ShuffleNetV2': [(r'^conv1\.0\.', '_conv1._conv.'), (r'^conv1\.1\.', '_conv1._batch_norm.'),
                     (r'^stage(\d)\.(\d+)\.branch([12])\.(\d)\.', _shuffle_unit)],
    'CSPPAN': [],
    'PicoHead': [(r'^conv_feat\.(cls|reg)_conv_(dw|pw)\.(\d+)\.', r'conv_feat.\1_conv_\2\3.'),
                 (r'^head_(cls|reg)\.(\d+)\.', r'head_\1\2.')],
}


def component_renames(detector: nn.Module) -> dict[str, list[Rename]]:
    """Target prefix -> the rename table of that component: its class's ``PADDLE_RENAMES`` where it declares one, else
    :data:`BUILTIN_RENAMES` of its class name, else none (the module uses Paddle's names)."""
    out: dict[str, list[Rename]] = {}
    for prefix in PREFIXES:
        cls = type(getattr(detector, prefix[:-1], None))
        table = getattr(cls, 'PADDLE_RENAMES', None)
        out[prefix] = list(table) if table is not None else list(BUILTIN_RENAMES.get(cls.__name__, []))
    return out


def paddle_key(target_key: str, renames: Mapping[str, list[Rename]] | None = None) -> str:
    """The Paddle name of the mmdet parameter or buffer ``target_key``."""
    for t_prefix, s_prefix in PREFIXES.items():
        if target_key.startswith(t_prefix):
            rest = target_key[len(t_prefix):]
            for pattern, repl in (renames or {}).get(t_prefix, []):
                rest = re.sub(pattern, repl, rest)
            for pattern, repl in BN_RENAMES:
                rest = re.sub(pattern, repl, rest)
            return s_prefix + rest
    raise ConversionError(f'the target key {target_key!r} is outside backbone / neck / bbox_head: the config is not '
                          'a PicoDet-like detector this converter knows')


def _linear_weights(detector: nn.Module) -> set[str]:
    return {f'{name}.weight' for name, m in detector.named_modules() if isinstance(m, nn.Linear)}


def _check_bins(value: np.ndarray, target: Mapping[str, torch.Tensor]) -> str:
    have = [k for k in TARGET_BINS_KEYS if k in target]
    flat = np.asarray(value, dtype=np.float64).reshape(-1)
    expected = (target[have[0]].double().reshape(-1).numpy() if have
                else np.linspace(0, len(flat) - 1, len(flat)))
    if flat.shape != expected.shape or not np.array_equal(flat, expected):
        raise ConversionError(f'{PADDLE_BINS_KEY} = {flat.tolist()} is not the integral bins linspace(0, '
                              f'{len(expected) - 1}, {len(expected)}) of the config\'s head: another reg_max?')
    return f'{PADDLE_BINS_KEY} checked: the fixed integral bins (reg_max {len(expected) - 1}), not a weight'


def _read_for_conversion(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], list[str]]:
    """The converter's reader: the arrays of the file, no inert stand-ins (nothing but arrays is read)."""
    return read_pdparams(path, what='input checkpoint'), []


@register_detector_converter('paddle', refusal_hint=REFUSAL_HINT, reader=_read_for_conversion)
def convert_paddle(obj: Any, unresolved: list[str], detector: nn.Module) -> tuple[dict[str, torch.Tensor], list[str]]:
    """``{paddle name: ndarray or tensor}`` (a read ``.pdparams``) -> the state dict of ``detector``, strictly."""
    if not isinstance(obj, Mapping) or not obj:
        raise ConversionError('the input holds no parameters (expected a .pdparams dict of arrays)')
    source = {k: (torch.from_numpy(np.ascontiguousarray(v)) if isinstance(v, np.ndarray) else v)
              for k, v in obj.items()}
    bad = [k for k, v in source.items() if not isinstance(v, torch.Tensor)]
    if bad or unresolved:
        raise ConversionError(f'entries that are not arrays: {bad[:4]} {unresolved[:4]}')
    target = detector.state_dict()
    renames = component_renames(detector)
    notes: list[str] = []
    fixed = {k for k in target if k in TARGET_BINS_KEYS}
    key_map = {t: paddle_key(t, renames) for t in target if t not in fixed}
    if len(set(key_map.values())) != len(key_map):
        raise ConversionError('internal error: several target keys map to one Paddle key')
    wanted = set(key_map.values())
    scales = sorted(k for k in source if UNUSED_SCALES.fullmatch(k) and k not in wanted)
    skipped = set(scales) | ({PADDLE_BINS_KEY} if PADDLE_BINS_KEY not in wanted else set())
    unknown = sorted(k for k in source if k not in wanted and k not in skipped)
    missing = sorted(s for t, s in key_map.items() if s not in source and not t.endswith('.' + BN_COUNTER))
    if unknown or missing:
        raise ConversionError(f'{len(missing)} missing keys {missing[:8]}, {len(unknown)} unknown keys '
                              f'{unknown[:8]}: is the file a PicoDet model and CONFIG its config?')
    if PADDLE_BINS_KEY in source and PADDLE_BINS_KEY not in wanted:
        notes.append(_check_bins(source[PADDLE_BINS_KEY].numpy(), target))
    linear = _linear_weights(detector)
    out: dict[str, torch.Tensor] = {}
    for t_key, ref in target.items():
        if t_key in fixed:
            out[t_key] = ref.detach().clone()
            continue
        s_key = key_map[t_key]
        if s_key not in source:  # a BN counter: Paddle has none
            out[t_key] = torch.zeros_like(ref)
            continue
        value = source[s_key]
        if t_key in linear and value.dim() == 2:
            value = value.t()
        if tuple(value.shape) != tuple(ref.shape):
            raise ConversionError(f'{s_key!r} has shape {tuple(value.shape)} but the config\'s {t_key!r} has '
                                  f'{tuple(ref.shape)}: the file is another model (width, reg_max or number of '
                                  'classes); pick the config of that model')
        out[t_key] = value.detach().clone().contiguous().to(ref.dtype)
    notes.insert(0, f'converted {len(key_map)} tensors (BN _mean/_variance -> running_mean/running_var'
                    f'{", " + str(len(linear)) + " Linear weights transposed" if linear else ""})')
    if scales:
        notes.append(f'dropped {len(scales)} unused GFLHead scales ({", ".join(scales)}): PicoHead never applies them')
    return out, notes
