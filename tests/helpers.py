"""Helpers shared by the test modules: the repository root, loading a script as a module, building a backbone, random
parameters and BN statistics.

Imported by ``conftest.py`` (which turns the fixtures among them into pytest fixtures) and by the tests themselves
(pytest puts ``tests/`` on ``sys.path``; a ``conftest.py`` is not meant to be imported as a module).
"""
from __future__ import annotations

import copy
import importlib.util
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any, Optional, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

#: The repository root (``tests/`` is one level below it).
REPO = Path(__file__).resolve().parents[1]


def load_script(relative_path: str | Path, module_name: Optional[str] = None) -> ModuleType:
    """Import a script of the repository (e.g. ``'tools/train.py'``) as a module, to call its ``main(argv)``.

    ``module_name`` defaults to the file's stem; the module is not added to ``sys.modules``.
    """
    path = REPO / relative_path
    spec = importlib.util.spec_from_file_location(module_name or path.stem, path)
    if spec is None or spec.loader is None:
        raise ImportError(f'cannot load {path} as a module')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_backbone(cfg: dict) -> nn.Module:
    """Build a registered backbone from a config dict (copied, so the caller's dict is untouched)."""
    from mmdet.registry import MODELS

    import shufflenet_det  # noqa: F401  (registers the backbones)
    return MODELS.build(copy.deepcopy(cfg))


@torch.no_grad()
def randomize_bn(model: nn.Module, seed: int = 0, *, with_weights: bool = False) -> nn.Module:
    """Random, non-trivial BN statistics and affine parameters, in place; returns ``model`` in eval mode.

    Every ``_BatchNorm`` gets ``running_mean`` and ``bias`` in [-0.1, 0.1), ``running_var`` and ``weight`` in
    [0.5, 1.5), so that folding BN, ``norm_eval`` and converted statistics are really exercised. With
    ``with_weights`` every conv / linear layer also gets weights of std ``1 / sqrt(fan_in)`` and biases of std 0.1,
    and every BN a random ``num_batches_tracked``: a reproducible random network, e.g. a reference model whose state
    dict is converted. Eval mode is returned because running statistics are only used there.
    """
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if with_weights and isinstance(m, (nn.Conv2d, nn.Linear)):
            fan_in = m.weight[0].numel()
            m.weight.copy_(torch.randn(m.weight.shape, generator=gen) / fan_in ** 0.5)
            if m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
        elif isinstance(m, _BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=gen) * 0.2 - 0.1)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            if m.affine:
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.rand(n, generator=gen) * 0.2 - 0.1)
            if with_weights:
                m.num_batches_tracked.fill_(int(torch.randint(1, 1000, (1,), generator=gen)))
    return model.eval()


#: float32 machine epsilon (2**-23): the relative rounding of one float32 operation is at most half of it.
FLOAT32_EPS = float(np.finfo(np.float32).eps)


def _as_float64(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().to(torch.float64).numpy()
    return np.asarray(value, dtype=np.float64)


def assert_close_scaled(actual: Any, expected: Any, atol: float, rtol: float = 0.0, msg: str = '') -> None:
    """Element-wise ``|actual - expected| <= atol * max(1, S) + rtol * |expected|`` with ``S = max |expected|``.

    The rule of :func:`shufflenet_det.deploy.parity.compare_tensors`, for tests that compare two different
    computations of the same function (BN folded or not, converted weights in another channel order, a
    re-implementation, another runtime). Their float32 rounding differs with the summation order of each kernel
    (AVX2, AVX-512, reference kernels), and that rounding follows the magnitude of the summed terms - of order ``S``
    for every element of the tensor, also near zero - not of each element: hence ``atol`` relative to ``S`` (an
    absolute floor where ``S < 1``). A wrong weight, layer or channel order changes elements by a sizeable fraction
    of ``S``. Shapes must be equal and ``actual`` finite; tensors and arrays are accepted (compared in float64).
    """
    a, e = _as_float64(actual), _as_float64(expected)
    assert a.shape == e.shape, f'{msg} shape {a.shape} != expected {e.shape}'
    assert np.isfinite(a).all(), f'{msg} non-finite values'
    if not e.size:
        return
    scale = float(np.abs(e).max())
    tol = atol * max(1.0, scale) + rtol * np.abs(e)
    diff = np.abs(a - e)
    worst = int(np.argmax(diff - tol))
    assert (diff <= tol).all(), (f'{msg} max |diff| {diff.max():.3g} (worst element: diff {diff.flat[worst]:.3g} > '
                                 f'tolerance {np.broadcast_to(tol, e.shape).flat[worst]:.3g}); max|expected| '
                                 f'{scale:.3g}, atol {atol:g} * max(1, max|expected|) + rtol {rtol:g} * |expected|')


def tree_snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """``relative path -> (size, mtime_ns)`` of every file below ``folder``, hidden ones included."""
    folder = Path(folder)
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob('*')) if p.is_file() or p.is_symlink()}


def assert_clean_failure(proc: subprocess.CompletedProcess, names: str | Sequence[str], folder: Path,
                         before: dict[str, tuple[int, int]], code: int | None = None) -> None:
    """A tool run failed as a user should see it: non-zero exit (``code`` if given), one ``error:`` message naming
    every string of ``names``, no traceback, and ``folder`` exactly as it was (``before``: :func:`tree_snapshot`)."""
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, f'exit 0 for a bad input:\n{out[-2000:]}'
    if code is not None:
        assert proc.returncode == code, f'exit {proc.returncode}, expected {code}:\n{out[-2000:]}'
    assert 'Traceback' not in out, out[-3000:]
    assert 'error:' in proc.stderr, out[-2000:]
    for name in [names] if isinstance(names, str) else names:
        assert name in proc.stderr, f'{name!r} not named in:\n{proc.stderr[-2000:]}'
    after = tree_snapshot(folder)
    assert after == before, f'files changed: {sorted(set(after) ^ set(before)) or "contents"}'
