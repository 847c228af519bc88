"""Safe checkpoint reading: the one loading policy of the project.

Every checkpoint this project reads - converter inputs, export and benchmark weights, and through mmengine's
``CheckpointLoader`` every ``load_from``, ``--resume``, ``load_checkpoint`` and ``init_cfg=dict(type='Pretrained')``
- goes through :func:`read_checkpoint`, which never executes code from the file:

* ``torch.load(..., weights_only=True)`` is passed explicitly, so no environment variable
  (``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``) can switch the restriction off;
* mmengine Runner checkpoints hold a few non-tensor objects (the message hub's ``HistoryBuffer``, whose statistics
  methods pickle through ``getattr``, and numpy arrays, scalars and dtypes). Where torch has
  ``torch.serialization.add_safe_globals`` (torch >= 2.4) exactly those globals are allow-listed there
  (:func:`install_safe_globals`, ``getattr`` through a stand-in restricted to ``HistoryBuffer``'s statistics
  methods); on older torch, whose weights-only unpickler has a fixed allow-list, the file is read through
  :class:`RestrictedUnpickler` instead: torch's own weights-only globals plus the same mmengine globals, nothing else.
  Either way any other pickled global raises ``pickle.UnpicklingError``.

:func:`read_state_dict` and :func:`load_weights` build on it, with one error type (:class:`CheckpointError`, a
``ValueError`` naming the file). Background: torch >= 2.6 made ``weights_only=True`` the default and mmengine 0.10.7
calls ``torch.load`` without the argument (open-mmlab/mmengine#1655), so its own checkpoints fail to load there; the
upstream proposal (open-mmlab/mmengine#1650) passes ``weights_only=False``, which this project never does.

:func:`read_checkpoint_inert` reads training checkpoints that pickle more than weights (PyTorch Lightning's
``*.ckpt``: callbacks, loops, hyper-parameters) under the same policy, every other global an inert stand-in that is
never imported or called.
"""
from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping

import torch
from torch import nn

#: torch >= 2.4 lets programs extend the weights-only allow-list.
HAS_SAFE_GLOBALS = hasattr(torch.serialization, 'add_safe_globals')


class CheckpointError(ValueError):
    """A checkpoint file that is missing, unreadable, unsafe, or does not fit the model it is loaded into."""


# ---------------------------------------------------------------------------------------------- the allow-list
def history_buffer_getattr(obj: Any, name: str) -> Any:
    """A ``getattr`` restricted to the statistics methods of mmengine's ``HistoryBuffer``.

    ``HistoryBuffer._statistics_methods`` holds the functions ``HistoryBuffer.min``, ``.max``, ``.mean``..., which
    pickle as ``builtins.getattr(HistoryBuffer, 'min')``. Allowing the real ``getattr`` would let a checkpoint reach
    any attribute of any allow-listed object; this stand-in serves exactly the lookups mmengine writes.
    """
    from mmengine.logging.history_buffer import HistoryBuffer
    if not HistoryBuffer._statistics_methods:
        # The defaults are registered when a first HistoryBuffer is made, which a fresh process resuming from a
        # checkpoint has not done yet when it loads the checkpoint.
        HistoryBuffer()
    registered = HistoryBuffer._statistics_methods
    if obj is HistoryBuffer and isinstance(name, str) and name in registered \
            and getattr(HistoryBuffer, name, None) is registered[name]:
        return registered[name]
    raise pickle.UnpicklingError(f'refusing getattr({obj!r}, {name!r}) in a weights_only checkpoint: only the '
                                 'HistoryBuffer statistics methods are allowed')


def mmengine_checkpoint_globals() -> list[Any]:
    """The non-tensor globals found in checkpoints written by an mmengine 0.x Runner.

    Entries are objects, or ``(object, "module.name")`` pairs where a pickle may name the object by an alias (numpy 1
    pickles say ``numpy.core.multiarray``; numpy 2 moved it to ``numpy._core``).
    """
    import numpy as np
    from mmengine.logging.history_buffer import HistoryBuffer

    try:
        from numpy._core import multiarray  # numpy >= 2
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray  # type: ignore[no-redef]

    allowed: list[Any] = [HistoryBuffer, np.ndarray, np.dtype, multiarray._reconstruct, multiarray.scalar,
                          (history_buffer_getattr, 'builtins.getattr'),
                          (history_buffer_getattr, '__builtin__.getattr')]
    for alias in ('numpy.core.multiarray', 'numpy._core.multiarray'):
        allowed.append((multiarray._reconstruct, f'{alias}._reconstruct'))
        allowed.append((multiarray.scalar, f'{alias}.scalar'))
    # numpy >= 1.25 pickles dtypes through their classes (numpy.dtypes.Float64DType, ...).
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        allowed.extend(getattr(dtypes, name) for name in dir(dtypes) if name.endswith('DType'))
    return allowed


def _qualified_names() -> dict[str, Any]:
    """``"module.name" -> object`` for every entry of :func:`mmengine_checkpoint_globals`."""
    names: dict[str, Any] = {}
    for entry in mmengine_checkpoint_globals():
        obj, name = entry if isinstance(entry, tuple) else (entry, f'{entry.__module__}.{entry.__qualname__}')
        names[name] = obj
    return names


_SAFE_GLOBALS_INSTALLED = False


def install_safe_globals() -> bool:
    """Allow-list the mmengine globals in torch's weights-only unpickler where torch can (torch >= 2.4).

    Returns whether it could; idempotent. On older torch :func:`read_checkpoint` uses :class:`RestrictedUnpickler`.
    """
    global _SAFE_GLOBALS_INSTALLED
    if not HAS_SAFE_GLOBALS:
        return False
    if not _SAFE_GLOBALS_INSTALLED:
        torch.serialization.add_safe_globals(mmengine_checkpoint_globals())
        _SAFE_GLOBALS_INSTALLED = True
    return True


# ---------------------------------------------------------------------------------------------- older torch
class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only torch's weights-only globals and the mmengine checkpoint globals.

    Used through :data:`restricted_pickle_module` as ``torch.load(..., pickle_module=...)`` where torch cannot extend
    its own weights-only allow-list (torch < 2.4). Every global a pickle names goes through :meth:`find_class`, so
    refusing unknown names there refuses every callable the file could run.
    """

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102
        qualified = f'{module}.{name}'
        allowed = _restricted_allowed()
        if qualified in allowed:
            return allowed[qualified]
        raise pickle.UnpicklingError(f'refusing global {qualified!r} in a checkpoint: only tensors, containers and '
                                     'the mmengine checkpoint globals are allowed')


_RESTRICTED_ALLOWED: dict[str, Any] | None = None


def _restricted_allowed() -> dict[str, Any]:
    global _RESTRICTED_ALLOWED
    if _RESTRICTED_ALLOWED is None:
        import codecs

        from torch import _weights_only_unpickler as wou
        allowed = dict(wou._get_allowed_globals())
        # numpy arrays pickle their raw bytes through codecs.encode (a pure str -> bytes function; newer torch
        # allow-lists it in its own weights-only unpickler too)
        allowed['_codecs.encode'] = codecs.encode
        allowed.update(_qualified_names())
        _RESTRICTED_ALLOWED = allowed
    return _RESTRICTED_ALLOWED


class _RestrictedPickleModule:
    """The ``pickle_module`` interface ``torch.load`` uses (``Unpickler``, ``load``), restricted."""

    Unpickler: type[pickle.Unpickler] = RestrictedUnpickler
    UnpicklingError = pickle.UnpicklingError
    __name__ = 'shufflenet_det_restricted_pickle'

    def load(self, file: Any, **kwargs: Any) -> Any:
        return self.Unpickler(file, **kwargs).load()


restricted_pickle_module = _RestrictedPickleModule()


# ---------------------------------------------------------------------------------------------- reading
def torch_load_safe(path: str | os.PathLike, map_location: Any = 'cpu') -> Any:
    """``torch.load`` under the project's policy (module docstring); exceptions are torch's own."""
    if install_safe_globals():
        return torch.load(str(path), map_location=map_location, weights_only=True)
    return torch.load(str(path), map_location=map_location, pickle_module=restricted_pickle_module)


def read_checkpoint(path: str | os.PathLike, map_location: Any = 'cpu', what: str = 'checkpoint') -> Any:
    """The object stored in checkpoint ``path``, read safely; :class:`CheckpointError` naming the file otherwise."""
    return _read_with(path, what, lambda p: torch_load_safe(p, map_location))


def _read_with(path: str | os.PathLike, what: str, load: Callable[[Path], Any], refusal_hint: str = '') -> Any:
    """``load(path)`` with every failure of an untrusted file turned into a :class:`CheckpointError` naming it."""
    p = Path(path).expanduser()
    if not p.exists():
        raise CheckpointError(f'{what} {str(path)!r} does not exist')
    if not p.is_file():
        raise CheckpointError(f'{what} {str(path)!r} is not a file')
    if p.stat().st_size == 0:
        raise CheckpointError(f'{what} {str(path)!r} is not a readable PyTorch checkpoint: the file is empty (0 bytes)')
    try:
        return load(p)
    except pickle.UnpicklingError as exc:
        reason = _unpickling_reason(exc)
        stand_in = re.search(re.escape(_UNRESOLVED_TAG) + r'([^\]]+)\]', reason)
        if stand_in:
            raise CheckpointError(f'{what} {str(path)!r} was refused by the safe loader (weights_only=True): it '
                                  f'pickles an object of class {stand_in.group(1)!r} (never imported) that cannot '
                                  f'be rebuilt as an inert stand-in ({reason}){refusal_hint}') from exc
        if _is_refused_global(reason):
            raise CheckpointError(f'{what} {str(path)!r} was refused by the safe loader (weights_only=True): it '
                                  'pickles objects other than tensors and the mmengine checkpoint state '
                                  f'({reason}){refusal_hint}') from exc
        raise CheckpointError(f'{what} {str(path)!r} is not a readable PyTorch checkpoint (truncated, corrupt or '
                              f'another format): {reason}') from exc
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - every way an untrusted file can fail to parse means "unreadable"
        # (a text file, random bytes, a truncated zip or legacy pickle: RuntimeError, EOFError, KeyError, IndexError,
        # struct.error, UnicodeDecodeError ... from inside torch's readers)
        raise CheckpointError(f'{what} {str(path)!r} is not a readable PyTorch checkpoint (truncated, corrupt or '
                              f'another format): {_describe_failure(p, exc)}') from exc


def _describe_failure(path: Path, exc: BaseException) -> str:
    """Why ``torch.load`` failed, from the file's first bytes where the exception says nothing useful."""
    try:
        with open(path, 'rb') as f:
            head = f.read(16)
    except OSError:
        head = b''
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ''
    detail = f'{type(exc).__name__}{": " + reason if reason else ""}'
    if head.startswith(b'PK\x03\x04'):
        return f'a damaged zip archive ({detail})'
    if head[:1] == b'\x80':
        return f'a damaged or truncated pickle ({detail})'
    return f'it starts with {head!r}, which is neither a zip archive (torch.save) nor a pickle - a text file?'


def _unpickling_reason(exc: pickle.UnpicklingError) -> str:
    """The unpickler's own reason, without torch's advice to load with ``weights_only=False``."""
    text = str(exc)
    marker = 'WeightsUnpickler error:'
    if marker in text:
        text = text.split(marker, 1)[1]
        text = text.split('Check the documentation of torch.load', 1)[0]
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return ' '.join(lines[:2]) if lines else type(exc).__name__


def _is_refused_global(reason: str) -> bool:
    return any(key in reason for key in ('Unsupported global', 'refusing global', 'refusing getattr',
                                         'not an allowed global'))


# ---------------------------------------------------------------------------------------------- inert reading
#: Marks the names of the stand-in classes, so that error messages can tell them apart.
_UNRESOLVED_TAG = 'Unresolved['
#: Modules whose globals are refused outright, even as stand-ins (torch's weights-only unpickler blocks the same).
_BLOCKED_MODULES = ('os', 'sys', 'posix', 'nt')


class UnresolvedObject:
    """An inert stand-in for a global (class or function) that a checkpoint names but the reader never imports.

    Training checkpoints (PyTorch Lightning's ``*.ckpt``) pickle state besides the weights: callbacks, loops,
    hyper-parameters, sometimes keyed or valued by classes of the training framework. :func:`read_checkpoint_inert`
    resolves every such name to a subclass of this one (:func:`unresolved_class`), whose instances only record what
    the pickle passes them (constructor arguments, state, items): nothing from the file is imported or called.
    """

    qualified_name: ClassVar[str] = '?'

    def __new__(cls, *args: Any, **kwargs: Any) -> UnresolvedObject:
        obj = super().__new__(cls)
        obj.__dict__.update(args=args, kwargs=kwargs, state=None, items={}, values=[])
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # the arguments were recorded by __new__
        pass

    def __setstate__(self, state: Any) -> None:
        self.__dict__['state'] = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.__dict__['items'][key] = value

    def append(self, value: Any) -> None:
        self.__dict__['values'].append(value)

    def extend(self, values: Any) -> None:
        self.__dict__['values'].extend(values)

    def __repr__(self) -> str:
        return f'<inert stand-in for {self.qualified_name}>'


def unresolved_class(qualified_name: str) -> type[UnresolvedObject]:
    """A fresh :class:`UnresolvedObject` subclass standing for ``qualified_name`` (``module.name``)."""
    return type(f'{_UNRESOLVED_TAG}{qualified_name}]', (UnresolvedObject,),
                {'qualified_name': qualified_name, '__module__': __name__})


def _inert_pickle_module(found: set[str]) -> Any:
    """A ``pickle_module`` for ``torch.load`` on torch without ``add_safe_globals``: :class:`RestrictedUnpickler`,
    except that unknown globals become stand-ins (their names added to ``found``) instead of errors."""

    class InertUnpickler(RestrictedUnpickler):
        def find_class(self, module: str, name: str) -> Any:  # noqa: D102
            try:
                return super().find_class(module, name)
            except pickle.UnpicklingError:
                if module.split('.')[0] in _BLOCKED_MODULES:
                    raise
                found.add(f'{module}.{name}')
                return unresolved_class(f'{module}.{name}')

    class InertPickleModule(_RestrictedPickleModule):
        Unpickler = InertUnpickler
        __name__ = 'shufflenet_det_inert_pickle'

    return InertPickleModule()


def read_checkpoint_inert(path: str | os.PathLike, map_location: Any = 'cpu', what: str = 'checkpoint',
                          hint: str = '') -> tuple[Any, list[str]]:
    """:func:`read_checkpoint` for files that pickle more than weights: ``(object, names)``, where every global
    outside the allow-list became an inert :class:`UnresolvedObject` stand-in and ``names`` lists them.

    The policy is unchanged: torch >= 2.5 lists the file's globals by disassembling the pickle
    (``torch.serialization.get_unsafe_globals_in_checkpoint``, nothing executed) and loads with
    ``weights_only=True`` while stand-ins are allow-listed under those names; torch without ``add_safe_globals``
    reads through :class:`RestrictedUnpickler` with stand-ins for unknown names; elsewhere (torch 2.4) unknown
    globals are refused as by :func:`read_checkpoint`. Globals of ``os`` / ``sys`` are refused in every case, and a
    stand-in that the weights-only unpickler cannot fill (a subclass of dict or list) makes the read fail; ``hint``
    is appended to those refusals (e.g. how to obtain a plain weight file). Callers must check that the part they
    use (the weights) holds no stand-in.
    """
    serialization = torch.serialization
    found: set[str] = set()

    def load(p: Path) -> Any:
        if HAS_SAFE_GLOBALS and hasattr(serialization, 'get_unsafe_globals_in_checkpoint') \
                and hasattr(serialization, 'safe_globals'):
            install_safe_globals()
            try:
                names = serialization.get_unsafe_globals_in_checkpoint(str(p))
            except (ValueError, RuntimeError):  # a legacy (non-zip) file: read as is, unknown globals refused
                names = []
            names = [n for n in names if n.split('.')[0] not in _BLOCKED_MODULES]
            found.update(names)
            with serialization.safe_globals([(unresolved_class(n), n) for n in names]):
                return torch.load(str(p), map_location=map_location, weights_only=True)
        if not HAS_SAFE_GLOBALS:
            return torch.load(str(p), map_location=map_location, pickle_module=_inert_pickle_module(found))
        return torch_load_safe(p, map_location)

    obj = _read_with(path, what, load, refusal_hint=hint)
    return obj, sorted(found)


def _strip(state: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state.items()}


def extract_state_dict(obj: Any, source: str = 'checkpoint', prefix: str | None = None) -> dict[str, torch.Tensor]:
    """The flat tensor state dict inside a loaded checkpoint object.

    Accepts a bare state dict or one nested under ``state_dict`` / ``model``; DataParallel's ``module.`` prefix is
    removed. With ``prefix`` (e.g. ``'backbone.'``) and keys carrying it, only those keys are kept, prefix removed.
    """
    if isinstance(obj, Mapping):
        for key in ('state_dict', 'model'):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f'{source} holds no state dict (expected a mapping of parameter names to tensors)')
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f'{source} is not a state dict of tensors (entries such as {bad[:3]} are not tensors)')
    state = _strip(obj, 'module.') if all(k.startswith('module.') for k in obj) else dict(obj)
    if prefix and any(k.startswith(prefix) for k in state):
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    return state


def read_state_dict(path: str | os.PathLike, prefix: str | None = None,
                    what: str = 'checkpoint') -> dict[str, torch.Tensor]:
    """:func:`read_checkpoint` then :func:`extract_state_dict`."""
    return extract_state_dict(read_checkpoint(path, what=what), f'{what} {str(path)!r}', prefix)


def check_state_dict_fits(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """CheckpointError listing missing / unexpected keys and shape mismatches between ``state`` and ``model``."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f'{k}: {tuple(state[k].shape)} in the file, {tuple(own[k].shape)} in the model'
              for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f'{len(missing)} missing keys (e.g. {missing[:4]})')
        if unexpected:
            parts.append(f'{len(unexpected)} unexpected keys (e.g. {unexpected[:4]})')
        if shapes:
            parts.append(f'{len(shapes)} shape mismatches (e.g. {shapes[:3]})')
        raise CheckpointError(f'{source} does not fit {type(model).__name__}: ' + '; '.join(parts)
                              + ' - is it a checkpoint of another model, width or number of classes?')


#: Checks of a module's ``Pretrained`` ``init_cfg`` run before mmengine loads anything (the backbones call
#: :func:`run_pretrained_checks` in ``init_weights``). Packages above this layer register theirs - the published
#: weights by name (:mod:`shufflenet_det.weights`) check that a ``shufflenet_det://`` entry fits the backbone - so the
#: models never import them.
_PRETRAINED_CHECKS: list[Callable[[nn.Module], None]] = []


def register_pretrained_check(check: Callable[[nn.Module], None]) -> None:
    """Run ``check(module)`` on every module whose ``init_cfg`` is about to load weights (idempotent)."""
    if check not in _PRETRAINED_CHECKS:
        _PRETRAINED_CHECKS.append(check)


def run_pretrained_checks(module: nn.Module) -> None:
    """Every registered check of ``module.init_cfg`` (each raises a ValueError naming what does not fit)."""
    for check in _PRETRAINED_CHECKS:
        check(module)


def load_weights(model: nn.Module, path: str | os.PathLike, prefix: str | None = None, strict: bool = True,
                 what: str = 'checkpoint') -> nn.Module:
    """Load the weights of ``path`` into ``model`` (every key and shape must match unless ``strict=False``)."""
    state = read_state_dict(path, prefix=prefix, what=what)
    if strict:
        check_state_dict_fits(model, state, f'{what} {str(path)!r}')
    model.load_state_dict(state, strict=strict)
    return model


# ---------------------------------------------------------------------------------------------- mmengine
def install_mmengine_loader() -> None:
    """Make mmengine's local-file checkpoint loader read through :func:`torch_load_safe` (idempotent).

    mmengine 0.10.x's ``load_from_local`` calls ``torch.load`` without ``weights_only``; every Runner load
    (``load_from``, ``resume``, ``load_checkpoint``, ``Pretrained`` init) of a local file goes through it.
    """
    from mmengine.runner.checkpoint import CheckpointLoader

    current = CheckpointLoader._schemes.get('')
    if getattr(current, '_shufflenet_det_safe', False):
        return

    def load_from_local_safe(filename: str, map_location: Any = None) -> Any:
        filename = os.path.expanduser(filename)
        if not os.path.isfile(filename):
            raise FileNotFoundError(f'{filename} can not be found.')
        return torch_load_safe(filename, map_location)

    load_from_local_safe._shufflenet_det_safe = True  # type: ignore[attr-defined]
    CheckpointLoader.register_scheme(prefixes='', loader=load_from_local_safe, force=True)
