"""A detector's export pieces, from the deploy form of its head (:mod:`.forms`, the built-in forms in :mod:`.heads`).

* :func:`deploy_form` - the form of ``detector.bbox_head``, looked up by the head's type (ValueError naming the type
  and the registered forms when there is none);
* :func:`export_wrapper` - the module that is exported: raw head outputs, or ``num_dets, boxes, scores, labels`` with
  NMS in the graph;
* :func:`postprocess_meta` - the ``postprocess`` entry of every export report (``runtime.postprocess.decode_outputs``
  reads it);
* :func:`head_output_scales` - the magnitudes of the raw class and box outputs, which the parity tolerances follow.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from ..utils.predict import preprocess_meta
from . import heads  # noqa: F401  (registers the built-in deploy forms)
from .forms import ExportWrapper, HeadDeployForm, deploy_form_of, head_of
from .parity import output_scale


def deploy_form(detector: nn.Module) -> HeadDeployForm:
    """The deploy form of the detector's head (:func:`.forms.deploy_form_of`)."""
    return deploy_form_of(head_of(detector))


def check_supported(detector: nn.Module) -> None:
    """ValueError unless the detector's head has a deploy form that can export its settings."""
    deploy_form(detector).check(head_of(detector))


def export_wrapper(detector: nn.Module, with_nms: bool = True) -> ExportWrapper:
    """The export module of ``detector`` from its head's form (ValueError when the head has none)."""
    return deploy_form(detector).wrapper(detector, with_nms=with_nms)


def postprocess_meta(detector: nn.Module) -> dict[str, Any]:
    """Everything the numpy post-processing needs to reproduce the head's ``predict_by_feat`` (JSON-serialisable).

    The head's form gives the decoding (anchor heads: anchors and coder, no ``decoder`` key; GFL heads:
    ``decoder='gfl_points'``); the ``preprocess`` part is :func:`shufflenet_det.utils.predict.preprocess_meta` of the
    detector (how raw images become the graph's input), so that a runner can prepare images without the config.
    """
    meta = deploy_form(detector).postprocess_meta(head_of(detector))
    meta['preprocess'] = preprocess_meta(detector)
    return meta


def head_output_scales(detector: nn.Module, x: torch.Tensor,
                       raw: Sequence[torch.Tensor] | None = None) -> list[tuple[float, float]]:
    """Per image of the batch ``x``, the magnitudes ``(S_cls, S_box)`` of the detector's raw class and box
    regression outputs (:func:`.parity.output_scale`): the scales its parity tolerances follow. ``raw``: the raw
    outputs of ``export_wrapper(detector, with_nms=False)`` on ``x`` when the caller has them already."""
    form, head = deploy_form(detector), head_of(detector)
    if raw is None:
        with torch.no_grad():
            raw = form.wrapper(detector, with_nms=False)(x)
    scales = []
    for i in range(int(x.shape[0])):
        cls, box = form.split_raw(head, [out[i:i + 1] for out in raw])
        scales.append((output_scale(cls), output_scale(box)))
    return scales
