"""Detectors among the models quantized: what an export report says the model is (:func:`model_kind`), and the
numpy decoders that turn the raw outputs of a detector exported without NMS into detections
(:data:`RAW_DECODERS`, :class:`DetectionsSession`), so that its COCO mAP is measured like that of one with NMS in
the graph (:func:`..evaluate.evaluate_onnx`)."""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np


def _decode(outputs: Sequence[np.ndarray], meta: dict[str, Any], img_hw: tuple[int, int]) -> dict[str, np.ndarray]:
    """The numpy decoder of the ncnn runner (:func:`shufflenet_det.runtime.postprocess.decode_outputs`), which reads
    the export's ``postprocess`` meta: one decoding path for every backend without NMS in the graph."""
    from ...runtime.postprocess import decode_outputs
    return decode_outputs(outputs, meta, img_hw)


#: Decoders of raw detector outputs (no NMS in the graph): ``(outputs of one image, postprocess meta, (H, W))`` ->
#: ``boxes`` (N, 4) in input pixels, ``scores`` (N,), ``labels`` (N,). ``anchor_head``: RetinaNet-like exports
#: (class maps then box-delta maps per level); ``gfl_points``: the lite detectors' one ``(1, N, C + 4 (reg_max + 1))``
#: tensor (:func:`shufflenet_det.runtime.postprocess.postprocess_gfl`); ``pico_points``: PicoDet's tensor of the
#: same layout, decoded at cell centres as PaddleDetection does (``runtime.postprocess.postprocess_pico``).
RAW_DECODERS: dict[str, Callable[[Sequence[np.ndarray], dict[str, Any], tuple[int, int]], dict[str, np.ndarray]]] = {
    'anchor_head': _decode, 'gfl_points': _decode, 'pico_points': _decode}


def register_raw_decoder(name: str, fn: Callable[[Sequence[np.ndarray], dict[str, Any], tuple[int, int]],
                                                 dict[str, np.ndarray]]) -> None:
    """Register the decoder of a raw export whose report says ``postprocess.decoder == name``."""
    RAW_DECODERS[name] = fn


def raw_decoder_name(report: dict[str, Any]) -> str | None:
    """The :data:`RAW_DECODERS` entry for a detector exported without NMS, None when there is none."""
    pp = report.get('postprocess') or {}
    name = pp.get('decoder') or ('anchor_head' if 'base_anchors' in pp else None)
    return name if name in RAW_DECODERS else None


class DetectionsSession:
    """A session of a detector without NMS in its graph that answers like one with it.

    ``run`` decodes the raw outputs (one image per call) with a :data:`RAW_DECODERS` function and returns
    ``num_dets (1,), boxes (1, N, 4), scores (1, N), labels (1, N)``, so :func:`..evaluate.evaluate_onnx` scores it.
    """

    def __init__(self, session: Any, decode: Callable[..., dict[str, np.ndarray]], meta: dict[str, Any]) -> None:
        self.session, self.decode, self.meta = session, decode, meta

    def get_inputs(self) -> Any:  # noqa: D102
        return self.session.get_inputs()

    def run(self, output_names: Any, feed: dict[str, np.ndarray]) -> list[np.ndarray]:  # noqa: D102
        x = next(iter(feed.values()))
        if x.shape[0] != 1:
            raise ValueError(f'raw detector outputs are decoded one image at a time, got a batch of {x.shape[0]}')
        dets = self.decode(self.session.run(None, feed), self.meta, (int(x.shape[2]), int(x.shape[3])))
        n = len(dets['scores'])
        return [np.asarray([n], np.int64), np.asarray(dets['boxes'], np.float32).reshape(1, n, 4),
                np.asarray(dets['scores'], np.float32).reshape(1, n), np.asarray(dets['labels']).reshape(1, n)]


def model_kind(report: dict[str, Any]) -> str:
    """``backbone``, ``detector`` (NMS in the graph) or ``raw-detector`` from an export report."""
    if report.get('what') == 'detector':
        return 'detector' if report.get('with_nms') else 'raw-detector'
    if report.get('what') == 'backbone':
        return 'backbone'
    raise ValueError(f"export report has what={report.get('what')!r}; expected 'backbone' or 'detector'")


def scorable_session(report: dict[str, Any], session: Any) -> Any:
    """The session as :func:`..evaluate.evaluate_onnx` needs it, or None when its outputs cannot be decoded."""
    kind = model_kind(report)
    if kind == 'detector':
        return session
    if kind == 'raw-detector':
        name = raw_decoder_name(report)
        if name is not None:
            return DetectionsSession(session, RAW_DECODERS[name], report['postprocess'])
    return None
