"""A detector exported by ``tools/deploy/export_onnx.py``, run in ONNX Runtime: ``.onnx`` + its ``.onnx.json`` report.

Needs numpy and onnxruntime (imported when a model is opened). Exports without NMS (``--no-nms``: the lite
detectors' raw tensor, a RetinaNet's per-level maps) are decoded with :mod:`.postprocess`, driven by the report's
``postprocess`` entry; exports with NMS in the graph are only unpadded. The report is checked against the graph
(:func:`.postprocess.check_session`) before any work, so a report copied next to another model is refused.
"""
from __future__ import annotations

import json
import os
from typing import Any, Optional, Sequence

import numpy as np

from . import postprocess
from .images import letterbox
from .io import PathLike


class OnnxModel:
    """An exported detector: ``.onnx`` + its ``.onnx.json`` report (input size, NMS or not, post-processing).

    ValueError naming the file when the model or its report is missing or unreadable, the report describes another
    graph or a backbone, or its ``postprocess`` entry is incomplete.
    """

    def __init__(self, path: PathLike, threads: int = 0) -> None:
        import onnxruntime as ort
        self.path = os.fspath(path)
        self.meta_path = self.path + '.json'
        for p in (self.path, self.meta_path):
            if not os.path.isfile(p):
                raise ValueError(f'{p!r} does not exist (export with tools/deploy/export_onnx.py)')
        try:
            with open(self.meta_path) as f:
                self.meta: dict[str, Any] = json.load(f)
            self.input_shape = [int(v) for v in self.meta['input_shape']]
            self.post: dict[str, Any] = self.meta['postprocess']
            self.post['preprocess']  # noqa: B018 - required key
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f'{self.meta_path!r} is not a detector export report of tools/deploy/export_onnx.py '
                             f'({type(exc).__name__}: {exc})') from None
        if self.meta.get('what') != 'detector':
            raise ValueError(f'{self.path!r} is not a detector export (report {self.meta_path!r} says '
                             f'what={self.meta.get("what")!r})')
        self.with_nms = bool(self.meta.get('with_nms'))
        self.dynamic = bool(self.meta.get('dynamic'))
        opts = ort.SessionOptions()
        if threads > 0:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self.sess = ort.InferenceSession(self.path, sess_options=opts, providers=['CPUExecutionProvider'])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types for corrupt files
            raise ValueError(f'ONNX model {self.path!r} cannot be loaded: {str(exc).strip()[:300]}') from None
        postprocess.check_session(self.sess, self.meta, self.path, self.meta_path)
        if not self.with_nms:
            try:
                postprocess.check_meta(self.post)
            except ValueError as exc:
                raise ValueError(f'{self.meta_path!r}: {exc}') from None
        self.input_name: str = self.sess.get_inputs()[0].name

    @property
    def export_hw(self) -> list[int]:
        """The input height and width the model was exported at."""
        return self.input_shape[2:]

    def check_input_hw(self, hw: Sequence[int], what: str) -> None:
        """ValueError naming ``what`` unless the model can run at ``hw``: its export size when static, sizes of its
        padding divisor when dynamic (:func:`.postprocess.check_input_hw`)."""
        if not self.dynamic and [int(v) for v in hw] != self.export_hw:
            raise ValueError(f'{what} is {int(hw[0])}x{int(hw[1])}, but the static model {self.path!r} takes '
                             f'{self.export_hw[0]}x{self.export_hw[1]} inputs')
        postprocess.check_input_hw(self.meta, hw, what)

    def preprocess(self, img_bgr: np.ndarray, size: Optional[Sequence[int]] = None) -> tuple[np.ndarray, float]:
        """Keep-ratio resize into the input size (``size`` or the export size), normalise, pad bottom/right with 0:
        ``(1, 3, H, W)`` float32 and the resize scale (:func:`.images.letterbox`)."""
        target = [int(v) for v in size] if size else self.export_hw
        return letterbox(img_bgr, target, self.post['preprocess'], dynamic=self.dynamic)

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        """One session run on a normalised ``(1, 3, H, W)`` input; the outputs in the graph's order."""
        return list(self.sess.run(None, {self.input_name: x}))

    def detect(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Detections (``boxes``, ``scores``, ``labels``) of one normalised ``(1, 3, H, W)`` input, in input pixels;
        ValueError when the report's ``postprocess`` does not fit the outputs."""
        outs = self.run(x)
        if self.with_nms:
            n = int(np.asarray(outs[0]).reshape(-1)[0])
            return dict(boxes=outs[1][0, :n], scores=outs[2][0, :n], labels=outs[3][0, :n])
        try:
            return postprocess.decode_outputs(outs, self.post, (int(x.shape[2]), int(x.shape[3])))
        except ValueError as exc:
            raise ValueError(f'{self.meta_path!r} does not describe the outputs of {self.path!r}: {exc}') from None
