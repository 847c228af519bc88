"""Compatibility fixes for the pinned stack on torch 2.13 (mmengine 0.10.7, mmcv 2.1.0, mmdet 3.3.0).

Every fix is gathered here, applied once by ``import shufflenet_det`` (so ``custom_imports`` applies it in any mmdet
project), and names the upstream issue it works around.

* Safe checkpoint loading (open-mmlab/mmengine#1655). torch >= 2.6 made ``torch.load(weights_only=True)`` the
  default; mmengine 0.10.7 calls ``torch.load`` without the argument, so its own checkpoints (which hold a
  ``HistoryBuffer`` and numpy objects) fail to load, and a ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` in the environment
  would switch the restriction off. :func:`allow_mmengine_checkpoints` installs the policy of
  :mod:`shufflenet_det.utils.checkpoint`: exactly the mmengine globals allow-listed where torch can, and mmengine's
  local checkpoint loader reading through the project's safe reader (explicit ``weights_only=True``, or a restricted
  unpickler on torch < 2.4). ``weights_only=False`` is never used.
* The Runner without torchvision. On a CPU-only machine the project installs no torchvision (the PyPI build is a CUDA
  build whose import raises beside a CPU torch). mmengine only imports it lazily (``torchvision://`` checkpoints),
  and mmengine's ``Visualizer``/mmdet evaluation do not need it; :func:`check_torchvision` turns a *broken*
  torchvision (present but failing to import) into an actionable error message instead of
  an unrelated traceback deep inside the Runner.
* Distributed training without CUDA. mmengine 0.10.7's launchers (``_init_dist_pytorch``/``_slurm``/``_mpi``) call
  ``torch.cuda.set_device(local_rank)`` unconditionally, which raises on a CPU-only torch, so ``tools/dist_train.sh``
  with the gloo backend cannot start (the call was last reworked upstream in open-mmlab/mmengine#973, which kept
  it unconditional; no upstream issue tracks CPU-only launches).
* mmdeploy 1.3.1 on torch 2.13: :mod:`shufflenet_det.deploy.compat_mmdeploy` (pytorch/pytorch#159646 made the dynamo
  exporter the default; pytorch/pytorch#164641 removed ``symbolic_opset9._cast_Long``; the TorchScript exporter moved
  to ``torch.onnx._internal``), applied from here. :func:`allow_cpu_distributed` skips only that call, only while one of those
  launchers runs, and only when CUDA is unavailable.
* The ``pkg_resources`` deprecation warning. mmengine 0.10.7 imports ``pkg_resources`` inside its package helpers
  (``mmengine/utils/package_utils.py``; replaced by ``importlib`` upstream in open-mmlab/mmengine#1676, after
  0.10.7), so every tool printed setuptools' "pkg_resources is deprecated as an API" warning three times. The stack
  pins setuptools < 82 precisely so that pkg_resources exists; :func:`silence_pkg_resources_warning` hides that one
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
    from .utils import checkpoint
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
        fn = getattr(dist_utils, name)
        if not getattr(fn, '_shufflenet_det_cpu_safe', False):
            setattr(dist_utils, name, _skip_cuda_set_device_without_cuda(fn))


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
    check_torchvision()
    # mmdeploy 1.3.1 on torch 2.13 (TorchScript exporter, the removed _cast_Long, its _model_to_graph rewriter):
    # see shufflenet_det/deploy/compat_mmdeploy.py; cheap, and a no-op when mmdeploy is not installed.
    from .deploy import compat_mmdeploy
    compat_mmdeploy.apply()
    _APPLIED = True
