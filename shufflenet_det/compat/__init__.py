"""Compatibility fixes for the stacks the plugin supports (torch 2.1-2.13, mmengine 0.10.x, mmcv 2.1, mmdet 3.3).

Every fix is gathered here, applied once by ``import shufflenet_det`` (so ``custom_imports`` applies it in any mmdet
project), feature-detected - it changes something only where its problem exists and is harmless where the API it
patches is missing - and names the upstream issue it works around.

* Safe checkpoint loading (open-mmlab/mmengine#1655). torch >= 2.6 made ``torch.load(weights_only=True)`` the
  default; mmengine 0.10.7 calls ``torch.load`` without the argument, so its own checkpoints (which hold a
  ``HistoryBuffer`` and numpy objects) fail to load, and a ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` in the environment
  would switch the restriction off. :func:`allow_mmengine_checkpoints` installs the policy of
  :mod:`shufflenet_det.utils.checkpoint`: exactly the mmengine globals allow-listed where torch can (>= 2.4), and
  mmengine's local checkpoint loader reading through the project's safe reader (explicit ``weights_only=True``, or
  a restricted unpickler on torch < 2.4). ``weights_only=False`` is never used.
* The Runner without torchvision. On a CPU-only machine the pinned stack installs no torchvision (the PyPI build is a
  CUDA build whose import raises beside a CPU torch). mmengine only imports it lazily (``torchvision://``
  checkpoints); :func:`check_torchvision` turns a *broken* torchvision (present but failing to import) into an
  actionable warning instead of an unrelated traceback deep inside the Runner.
* Distributed training without CUDA. mmengine 0.10.7's launchers (``_init_dist_pytorch``/``_slurm``/``_mpi``) call
  ``torch.cuda.set_device(local_rank)`` unconditionally, which raises on a CPU-only torch, so ``tools/dist_train.sh``
  with the gloo backend cannot start (last reworked upstream in open-mmlab/mmengine#973, which kept it
  unconditional). :func:`allow_cpu_distributed` skips only that call, only while one of those launchers runs, and
  only when CUDA is unavailable.
* mmdeploy 1.3.1 on torch >= 2.9: :mod:`.mmdeploy` (pytorch/pytorch#159646 made the
  dynamo exporter the default; pytorch/pytorch#164641 removed ``symbolic_opset9._cast_Long``; the TorchScript
  exporter moved to ``torch.onnx._internal``), applied from here; each of its fixes checks for its own problem.
* ``shufflenet_det::`` config names. mmengine 0.10.x resolves ``pkg::path`` base configs only for the OpenMMLab
  packages of its ``MODULE2PACKAGE`` table (open-mmlab/mmengine#1410; the fix open-mmlab/mmengine#1411 was closed
  unmerged) and finds a package's folder from its distribution location, which a PEP 660 editable install lacks.
  :func:`register_config_package` adds this package, whose configs ship in ``shufflenet_det/.mim/configs``. Config
  files are parsed before their ``custom_imports`` run, so the name resolves in processes that imported
  ``shufflenet_det`` first (this project's tools, ``python -m shufflenet_det.apps.mmdet_tool``, a user's script).
* The ``pkg_resources`` deprecation warning. mmengine 0.10.7 imports ``pkg_resources`` inside its package helpers
  (replaced by ``importlib`` upstream in open-mmlab/mmengine#1676, after 0.10.7), so every tool printed setuptools'
  "pkg_resources is deprecated as an API" warning three times. :func:`silence_pkg_resources_warning` hides that one
  message (matched exactly, ``UserWarning`` only) and nothing else.
"""
from __future__ import annotations

import importlib.util
import warnings
from typing import Any

_APPLIED = False


def allow_mmengine_checkpoints() -> None:
    """Safe loading of mmengine Runner checkpoints on every torch (see :mod:`shufflenet_det.utils.checkpoint`).

    Allow-lists the mmengine globals for ``weights_only=True`` where torch can (>= 2.4) and routes mmengine's
    local-file checkpoint loader through the project's safe reader, which passes ``weights_only=True`` explicitly
    (or, on older torch, reads through a restricted unpickler).
    """
    from ..utils import checkpoint
    checkpoint.install_safe_globals()
    checkpoint.install_mmengine_loader()


def check_torchvision() -> None:
    """Warn, naming the fix, when a torchvision is installed but cannot be imported (it would crash the Runner)."""
    if importlib.util.find_spec('torchvision') is None:
        return
    try:
        import torchvision  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any import failure means the same thing here
        warnings.warn(
            f'torchvision is installed but cannot be imported ({type(exc).__name__}: {exc}); mmengine\'s Runner '
            'will crash on it. On a CPU-only torch uninstall it (`pip uninstall torchvision`): shufflenet_det does '
            'not need it.', RuntimeWarning, stacklevel=2)


def _skip_cuda_set_device_without_cuda(init_fn: Any) -> Any:
    import functools

    @functools.wraps(init_fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import torch
        if torch.cuda.is_available():
            return init_fn(*args, **kwargs)
        real_set_device = torch.cuda.set_device
        torch.cuda.set_device = lambda device: None  # no GPU to select: processes run on the CPU (gloo)
        try:
            return init_fn(*args, **kwargs)
        finally:
            torch.cuda.set_device = real_set_device
    wrapper._shufflenet_det_cpu_safe = True  # type: ignore[attr-defined]
    return wrapper


def allow_cpu_distributed() -> None:
    """Let mmengine's distributed launchers start on a CPU-only torch (see module docstring)."""
    from mmengine.dist import utils as dist_utils
    for name in ('_init_dist_pytorch', '_init_dist_slurm', '_init_dist_mpi'):
        fn = getattr(dist_utils, name, None)
        if fn is not None and not getattr(fn, '_shufflenet_det_cpu_safe', False):
            setattr(dist_utils, name, _skip_cuda_set_device_without_cuda(fn))


def register_config_package() -> None:
    """Let mmengine resolve ``shufflenet_det::<path>`` config names (see module docstring)."""
    try:
        from mmengine.config import utils as config_utils
    except ImportError:  # pragma: no cover - mmengine is a dependency
        return
    table = getattr(config_utils, 'MODULE2PACKAGE', None)
    if isinstance(table, dict):  # mmengine 0.10.x only resolves the packages listed there
        table.setdefault('shufflenet_det', 'shufflenet_det')
    try:
        from mmengine.config import config as config_module
    except ImportError:  # pragma: no cover
        return
    current = getattr(config_module, 'get_installed_path', None)
    if current is None or getattr(current, '_shufflenet_det_aware', False):
        return

    def get_installed_path(package: str) -> str:
        # mmengine derives the folder from the distribution's location, which an editable (PEP 660) install does
        # not have; the imported package knows where it is.
        if package == 'shufflenet_det':
            import os
            return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # shufflenet_det/
        return current(package)

    get_installed_path._shufflenet_det_aware = True  # type: ignore[attr-defined]
    config_module.get_installed_path = get_installed_path


PKG_RESOURCES_WARNING = r'pkg_resources is deprecated as an API'


def silence_pkg_resources_warning() -> None:
    """Hide setuptools' pkg_resources deprecation warning that mmengine's package helpers trigger (module doc)."""
    warnings.filterwarnings('ignore', message=PKG_RESOURCES_WARNING, category=UserWarning)


def apply() -> None:
    """Apply every fix once (idempotent)."""
    global _APPLIED
    if _APPLIED:
        return
    silence_pkg_resources_warning()
    allow_mmengine_checkpoints()
    allow_cpu_distributed()
    register_config_package()
    check_torchvision()
    # mmdeploy 1.3.1 on torch 2.13 (TorchScript exporter, the removed _cast_Long, its _model_to_graph rewriter):
    # cheap, and a no-op when mmdeploy is not installed.
    from . import mmdeploy
    mmdeploy.apply()
    _APPLIED = True
