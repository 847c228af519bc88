"""Fixes that let mmdeploy 1.3.1 (last release, built for torch <= 2.1) export on torch 2.13.

``import shufflenet_det`` calls :func:`apply` (through :func:`shufflenet_det.compat.apply`): it installs fixes 1 and
2, which are cheap and do not import mmdeploy; fix 3 needs mmdeploy's rewriter registry and is installed when
mmdeploy is already imported or with ``apply(import_mmdeploy=True)``, as the project's mmdeploy tool does
(:func:`shufflenet_det.deploy.compat_mmdeploy.prepare_mmdeploy`, which also registers the lite head's rewriter).
Every fix is idempotent, touches nothing when mmdeploy is not installed, and names the upstream change it works
around:

1. ``torch.onnx.export`` defaults to the dynamo exporter since torch 2.9 (pytorch/pytorch#159646, "[ONNX] Default to
   dynamo export"). mmdeploy's ``apis/onnx/export.py`` calls ``torch.onnx.export`` without ``dynamo`` and relies on
   the TorchScript exporter (its rewriters patch traced functions and TorchScript symbolics; the dynamo path also
   needs onnxscript). The fix wraps ``torch.onnx.export`` so that calls *coming from mmdeploy's modules* that do not
   pass ``dynamo`` get ``dynamo=False``; every other caller keeps torch's default.
2. ``torch.onnx.symbolic_opset9._cast_Long`` was removed with the other deprecated ``_cast_*`` helpers
   (pytorch/pytorch#164641, "Remove long-deprecated casting functions"). mmdeploy's ``mmcv/ops/roi_align.py``
   symbolic imports it to cast RoI batch indices (two-stage detectors). The stand-in emits the same ONNX ``Cast`` to
   INT64.
3. torch 2.13 moved the TorchScript exporter to ``torch.onnx._internal.torchscript_exporter`` and keeps
   ``torch.onnx.utils`` as a re-export (same refactor as 1.). mmdeploy's ``model_to_graph__custom_optimizer`` rewriter
   patches ``torch.onnx.utils._model_to_graph``, which the exporter no longer calls, so mmdeploy's ONNX passes (the
   opset >= 13 Squeeze/Unsqueeze fix, ``optimize=True`` passes) would silently not run. The fix registers the same
   rewriter for the function the exporter really calls.
"""
from __future__ import annotations

import functools
import importlib.util
import sys
from typing import Any, Callable

_APPLIED = False
_INTERNAL_MODEL_TO_GRAPH = 'torch.onnx._internal.torchscript_exporter.utils._model_to_graph'


def mmdeploy_available() -> bool:
    """True when the mmdeploy package is installed."""
    return importlib.util.find_spec('mmdeploy') is not None


def _called_from_mmdeploy(depth: int = 2) -> bool:
    frame = sys._getframe(depth)
    return str(frame.f_globals.get('__name__', '')).startswith('mmdeploy.')


def fix_onnx_export_default_exporter() -> bool:
    """Fix 1 (pytorch/pytorch#159646): mmdeploy's ``torch.onnx.export`` calls use the TorchScript exporter."""
    import inspect

    import torch.onnx
    current = torch.onnx.export
    if getattr(current, '_shufflenet_det_torchscript_for_mmdeploy', False):
        return False
    dynamo = inspect.signature(current).parameters.get('dynamo')
    if dynamo is None or dynamo.default is not True:  # torch < 2.9: the TorchScript exporter is the default
        return False

    @functools.wraps(current)
    def export(*args: Any, **kwargs: Any) -> Any:
        if 'dynamo' not in kwargs and _called_from_mmdeploy():
            kwargs['dynamo'] = False
        return current(*args, **kwargs)

    export._shufflenet_det_torchscript_for_mmdeploy = True  # type: ignore[attr-defined]
    torch.onnx.export = export
    return True


def cast_long_symbolic(g: Any, input: Any, non_blocking: Any = None) -> Any:
    """Stand-in for the removed ``symbolic_opset9._cast_Long``: ONNX ``Cast(to=INT64)``."""
    from torch.onnx import TensorProtoDataType
    # a pybind11 enum: int() is its value at run time, which torch's stubs do not declare
    return g.op('Cast', input, to_i=int(TensorProtoDataType.INT64))  # type: ignore[call-overload]


def fix_cast_long() -> bool:
    """Fix 2 (pytorch/pytorch#164641): provide ``symbolic_opset9._cast_Long`` where it is gone."""
    import torch.onnx.symbolic_opset9 as opset9
    if hasattr(opset9, '_cast_Long'):
        return False
    opset9._cast_Long = cast_long_symbolic  # type: ignore[attr-defined]  # the attribute torch removed
    return True


def fix_model_to_graph_rewriter() -> bool:
    """Fix 3: register mmdeploy's ``_model_to_graph`` rewriter for the function torch 2.13 really calls."""
    if not mmdeploy_available():
        return False
    try:
        import torch.onnx._internal.torchscript_exporter.utils  # noqa: F401
    except ImportError:  # older torch: mmdeploy's own registration works
        return False
    from mmdeploy.apis.onnx.optimizer import model_to_graph__custom_optimizer
    from mmdeploy.core import FUNCTION_REWRITER
    records = FUNCTION_REWRITER._registry._rewrite_records  # noqa: SLF001
    if _INTERNAL_MODEL_TO_GRAPH in records:
        return False
    FUNCTION_REWRITER.register_rewriter(_INTERNAL_MODEL_TO_GRAPH)(model_to_graph__custom_optimizer)
    return True


def apply(import_mmdeploy: bool = False) -> dict[str, bool]:
    """Apply the fixes (idempotent); returns which ones changed something in this call.

    Fix 3 is only installed when mmdeploy is imported already or ``import_mmdeploy`` is True, so that calling this
    from ``import shufflenet_det`` never pays for importing mmdeploy.
    """
    global _APPLIED
    if not mmdeploy_available():
        return {}
    done = dict(onnx_export_dynamo_false=fix_onnx_export_default_exporter(), cast_long=fix_cast_long())
    if import_mmdeploy or 'mmdeploy' in sys.modules:
        done['model_to_graph_rewriter'] = fix_model_to_graph_rewriter()
    _APPLIED = True
    return done


def is_applied() -> bool:
    """Whether :func:`apply` ran in this process."""
    return _APPLIED


def wrapped_callable(fn: Callable) -> bool:
    """True for the ``torch.onnx.export`` wrapper installed by fix 1 (for tests and diagnostics)."""
    return bool(getattr(fn, '_shufflenet_det_torchscript_for_mmdeploy', False))
