"""mmdeploy in this project's processes: the torch fixes of :mod:`shufflenet_det.compat.mmdeploy` plus the rewriters
of the project's point heads.

:func:`apply` with ``import_mmdeploy=True`` is what the project's mmdeploy tool calls before using mmdeploy. The
rewriters of the lite detectors' head (:mod:`.mmdeploy_lite`) and of PP-PicoDet's head (:mod:`.mmdeploy_pico`;
mmdeploy's generic ``BaseDenseHead`` rewriter cannot decode either) are registered by
:func:`register_head_rewriters`, which ``import shufflenet_det`` also calls when mmdeploy is imported already -
mmdeploy's own ``tools/deploy.py`` imports mmdeploy before the model config's ``custom_imports``, so its deploy
configs export a lite or PicoDet detector whose model config only imports ``shufflenet_det``.
"""
from __future__ import annotations

import importlib
import sys

from ..compat.mmdeploy import _INTERNAL_MODEL_TO_GRAPH, is_applied, mmdeploy_available, wrapped_callable
from ..compat.mmdeploy import apply as apply_torch_fixes

#: The method that :mod:`.mmdeploy_lite` rewrites.
LITE_PREDICT_BY_FEAT = 'shufflenet_det.models.dense_heads.lite_gfl_head.LiteGFLHead.predict_by_feat'
#: The method that :mod:`.mmdeploy_pico` rewrites.
PICO_PREDICT_BY_FEAT = 'shufflenet_det.models.dense_heads.pico_head.PicoHead.predict_by_feat'
#: ``apply``'s key -> (the rewritten method, the module whose import registers its rewriter).
HEAD_REWRITERS: dict[str, tuple[str, str]] = {
    'lite_head_rewriter': (LITE_PREDICT_BY_FEAT, 'mmdeploy_lite'),
    'pico_head_rewriter': (PICO_PREDICT_BY_FEAT, 'mmdeploy_pico'),
}

__all__ = ['HEAD_REWRITERS', 'LITE_PREDICT_BY_FEAT', 'PICO_PREDICT_BY_FEAT', 'apply', 'is_applied',
           'mmdeploy_available', 'register_head_rewriters', 'register_lite_rewriter', 'register_pico_rewriter',
           'wrapped_callable', '_INTERNAL_MODEL_TO_GRAPH']


def _register(key: str) -> bool:
    """Import the module of :data:`HEAD_REWRITERS` ``[key]`` unless its rewriter is registered; True when this call
    registered it."""
    if not mmdeploy_available():
        return False
    from mmdeploy.core import FUNCTION_REWRITER
    func_name, module = HEAD_REWRITERS[key]
    if func_name in FUNCTION_REWRITER._registry._rewrite_records:  # noqa: SLF001
        return False
    importlib.import_module(f'{__package__}.{module}')
    return True


def register_lite_rewriter() -> bool:
    """Register mmdeploy's rewriter of ``LiteGFLHead.predict_by_feat`` (importing :mod:`.mmdeploy_lite` does); True
    when this call registered it."""
    return _register('lite_head_rewriter')


def register_pico_rewriter() -> bool:
    """Register mmdeploy's rewriter of ``PicoHead.predict_by_feat`` (importing :mod:`.mmdeploy_pico` does); True
    when this call registered it."""
    return _register('pico_head_rewriter')


def register_head_rewriters() -> dict[str, bool]:
    """Register both head rewriters (:data:`HEAD_REWRITERS`); which ones this call registered."""
    return {key: _register(key) for key in HEAD_REWRITERS}


def apply(import_mmdeploy: bool = False) -> dict[str, bool]:
    """The torch fixes (:func:`shufflenet_det.compat.mmdeploy.apply`) and, when mmdeploy is imported already or
    ``import_mmdeploy`` is True, the head rewriters; returns which ones changed something in this call."""
    done = apply_torch_fixes(import_mmdeploy)
    if done and (import_mmdeploy or 'mmdeploy' in sys.modules):
        done.update(register_head_rewriters())
    return done
