"""An ncnn model exported by ``tools/deploy/export_ncnn.py``: ``.param`` + ``.bin`` + the ``.json`` report.

Needs numpy and the ncnn wheel (``pip install ncnn``), imported when a model is opened. Detector exports end at the
raw head tensors; :meth:`NcnnModel.detect` decodes them with :mod:`.postprocess`, driven by the report's
``postprocess`` entry. Backbone exports give their feature maps.
"""
from __future__ import annotations

import json
import os
from typing import Any, Optional, Sequence

import numpy as np

from . import postprocess
from .images import DEFAULT_PREPROCESS, fit_size, pad_to_divisor
from .io import PathLike
from .ncnn_param import extract_blobs, load_net


class NcnnModel:
    """An exported model: ``.param`` + ``.bin`` + ``.json`` report (blob names, input size, post-processing).

    ``param`` is the ``.param`` file or the base name of the three files; ValueError naming the file when one is
    missing, the report is not an export report or ncnn cannot load the model.
    """

    def __init__(self, param: PathLike, threads: int = 1, fp16: bool = True) -> None:
        import ncnn
        self._ncnn = ncnn
        param = os.fspath(param)
        base = param[:-len('.param')] if param.endswith('.param') else param
        self.param, self.bin, self.meta_path = base + '.param', base + '.bin', base + '.json'
        for path in (self.param, self.bin, self.meta_path):
            if not os.path.isfile(path):
                raise ValueError(f'{path!r} does not exist (export with tools/deploy/export_ncnn.py)')
        try:
            with open(self.meta_path) as f:
                self.meta: dict[str, Any] = json.load(f)
            self.input_shape = [int(v) for v in self.meta['input_shape']]
            self.input_blob: str = self.meta['input_blob']
            self.output_blobs: list[str] = list(self.meta['output_blobs'])
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f'{self.meta_path!r} is not an export report of tools/deploy/export_ncnn.py '
                             f'({type(exc).__name__}: {exc})') from None
        self.dynamic = bool(self.meta.get('dynamic'))
        self.is_detector = self.meta.get('what') == 'detector'
        if self.is_detector:
            try:
                postprocess.check_meta(self.meta.get('postprocess'))
            except ValueError as exc:
                raise ValueError(f'{self.meta_path!r}: {exc}') from None
        self.net = load_net(self.param, self.bin, threads, fp16)  # the options of every ncnn model of the runtime

    @property
    def export_hw(self) -> list[int]:
        """The input height and width the model was exported at."""
        return self.input_shape[2:]

    @property
    def preprocess_meta(self) -> dict[str, Any]:
        """How the model's inputs are normalised (the report's, else mmdet's ImageNet defaults)."""
        post = self.meta.get('postprocess') or {}
        return post.get('preprocess') or self.meta.get('preprocess') or dict(DEFAULT_PREPROCESS)

    def check_input_hw(self, hw: Sequence[int], what: str) -> None:
        """ValueError naming ``what`` unless the model can run at ``hw``: its export size when static, sizes of its
        padding divisor when dynamic (:func:`.postprocess.check_input_hw`)."""
        if not self.dynamic and [int(v) for v in hw] != self.export_hw:
            raise ValueError(f'{what} is {int(hw[0])}x{int(hw[1])}, but the static model {self.param!r} takes '
                             f'{self.export_hw[0]}x{self.export_hw[1]} inputs')
        postprocess.check_input_hw(self.meta, hw, what)

    def preprocess(self, img_bgr: np.ndarray, size: Optional[Sequence[int]] = None) -> tuple[Any, float, Any]:
        """Keep-ratio resize to fit the input size (``size`` or the export size), normalise, pad bottom/right with 0
        (mmdet's test order), with ncnn's own pixel routines.

        Returns ``(mat, scale, keep)``: ``keep`` holds the buffers ncnn reads without copying.
        """
        ncnn = self._ncnn
        pre = self.preprocess_meta
        target = [int(v) for v in size] if size else self.export_hw
        h, w = img_bgr.shape[:2]
        nh, nw, scale = fit_size(h, w, target)
        img = np.ascontiguousarray(img_bgr)
        pixel = ncnn.Mat.PixelType.PIXEL_BGR2RGB if pre.get('bgr_to_rgb', True) else ncnn.Mat.PixelType.PIXEL_BGR
        mat = ncnn.Mat.from_pixels_resize(img, pixel, w, h, nw, nh)
        mat.substract_mean_normalize([float(m) for m in pre['mean']], [1.0 / float(s) for s in pre['std']])
        th, tw = pad_to_divisor(nh, nw, int(pre.get('pad_size_divisor', 1) or 1)) if self.dynamic else target
        padded = ncnn.copy_make_border(mat, 0, th - nh, 0, tw - nw, ncnn.BorderType.BORDER_CONSTANT, 0.0)
        return padded, scale, (img, mat)

    def tensor_mat(self, x: np.ndarray) -> tuple[Any, Any]:
        """An ncnn ``Mat`` of a normalised ``(1, 3, H, W)`` float32 tensor and the buffer it shares (keep it)."""
        chw = np.ascontiguousarray(x[0], dtype=np.float32)
        return self._ncnn.Mat(chw), chw  # Mat(array) reads the array's memory: it must stay alive

    def run(self, mat: Any) -> list[np.ndarray]:
        """One forward pass; the outputs in the export's order (ncnn drops the batch axis)."""
        return extract_blobs(self.net, {self.input_blob: mat}, self.output_blobs, self.param)

    def decode(self, outs: Sequence[np.ndarray], hw: Sequence[int]) -> dict[str, np.ndarray]:
        """Detections (``boxes``, ``scores``, ``labels``, in input pixels) from the raw outputs of an input of
        size ``hw``; ValueError when the report's ``postprocess`` does not fit them."""
        try:
            return postprocess.decode_outputs(outs, self.meta['postprocess'], (int(hw[0]), int(hw[1])))
        except ValueError as exc:
            raise ValueError(f'{self.meta_path!r} does not describe the outputs of {self.param!r}: {exc}') from None

    def detect(self, img_bgr: np.ndarray, size: Optional[Sequence[int]] = None) -> dict[str, np.ndarray]:
        """Detections of a BGR picture in its own pixels."""
        mat, scale, keep = self.preprocess(img_bgr, size)
        dets = self.decode(self.run(mat), (mat.h, mat.w))
        del keep
        dets['boxes'] = dets['boxes'] / scale
        return dets
