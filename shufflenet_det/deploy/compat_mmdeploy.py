"""mmdeploy in this project's processes: the torch fixes of :mod:`shufflenet_det.compat.mmdeploy` plus the rewriter
of the lite detectors' head.

:func:`apply` with ``import_mmdeploy=True`` is what the project's mmdeploy tool calls before using mmdeploy. The lite
head's rewriter (:mod:`.mmdeploy_lite`; mmdeploy's generic ``BaseDenseHead`` rewriter cannot decode the lite head) is
registered by :func:`register_lite_rewriter`, which ``import shufflenet_det`` also calls when mmdeploy is imported
already - mmdeploy's own ``tools/deploy.py`` imports mmdeploy before the model config's ``custom_imports``, so its
deploy configs export a lite detector whose model config only imports ``shufflenet_det``.
"""
from __future__ import annotations

import importlib
import sys

from ..compat.mmdeploy import _INTERNAL_MODEL_TO_GRAPH, is_applied, mmdeploy_available, wrapped_callable
from ..compat.mmdeploy import apply as apply_torch_fixes

#: The method that :mod:`.mmdeploy_lite` rewrites.
LITE_PREDICT_BY_FEAT = 'shufflenet_det.models.dense_heads.lite_gfl_head.LiteGFLHead.predict_by_feat'

__all__ = ['LITE_PREDICT_BY_FEAT', 'apply', 'is_applied', 'mmdeploy_available', 'register_lite_rewriter',
           'wrapped_callable', '_INTERNAL_MODEL_TO_GRAPH']


def register_lite_rewriter() -> bool:
    """Register mmdeploy's rewriter of ``LiteGFLHead.predict_by_feat`` (importing :mod:`.mmdeploy_lite` does); True
    when this call registered it."""
    if not mmdeploy_available():
        return False
    from mmdeploy.core import FUNCTION_REWRITER
    if LITE_PREDICT_BY_FEAT in FUNCTION_REWRITER._registry._rewrite_records:  # noqa: SLF001
        return False
    importlib.import_module(f'{__package__}.mmdeploy_lite')
    return True


def apply(import_mmdeploy: bool = False) -> dict[str, bool]:
    """The torch fixes (:func:`shufflenet_det.compat.mmdeploy.apply`) and, when mmdeploy is imported already or
    ``import_mmdeploy`` is True, the lite head's rewriter; returns which ones changed something in this call."""
    done = apply_torch_fixes(import_mmdeploy)
    if done and (import_mmdeploy or 'mmdeploy' in sys.modules):
        done['lite_head_rewriter'] = register_lite_rewriter()
    return done
