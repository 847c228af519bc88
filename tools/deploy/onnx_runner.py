"""Run (and time) a detector exported by tools/deploy/export_onnx.py in ONNX Runtime - numpy + onnxruntime, no torch.

For exports without NMS (``--no-nms``; the lite detectors' raw tensor ``output (1, N, C + 4 (reg_max + 1))``, or a
RetinaNet's per-level maps) the detections are decoded here in numpy - priors, box decoding, class-aware NMS, as
mmdet does - with the parameters stored in the model's ``.onnx.json`` report (``postprocess``); exports with NMS in
the graph are only unpadded. On a board: ``pip install onnxruntime numpy``, copy this file together with
``tools/deploy/ncnn_runner.py`` (its image reading, timing and error handling are reused; ncnn itself is not needed)
and ``shufflenet_det/runtime/postprocess.py`` (next to it, or keep the repository layout), and the ``.onnx`` +
``.onnx.json``.

Images: ``.ppm``/``.pgm`` and ``.npy`` read with numpy, other formats with OpenCV or Pillow when installed; an image
of another size than the export's is resized (keep ratio, bilinear) with OpenCV or Pillow, then normalised and padded
bottom/right with 0 as mmdet's test pipeline does. ``--tensor`` feeds an already normalised array as it is.

Examples::

    python tools/deploy/onnx_runner.py work_dirs/deploy/lite_raw.onnx --image demo.ppm --score-thr 0.3
    python tools/deploy/onnx_runner.py work_dirs/deploy/lite_raw.onnx --threads 2 --bench 100 --out-json r.json
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from typing import Any, Optional, Sequence

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def _load_ncnn_runner() -> Any:
    """``ncnn_runner.py`` (next to this file) as a module, for its torch-free helpers."""
    path = os.path.join(HERE, 'ncnn_runner.py')
    if not os.path.isfile(path):
        raise FileNotFoundError('ncnn_runner.py not found next to onnx_runner.py; copy tools/deploy/ncnn_runner.py')
    spec = importlib.util.spec_from_file_location('_shufflenet_det_ncnn_runner', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_RUNNER = _load_ncnn_runner()


def _resize(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bilinear resize of a BGR uint8 image (OpenCV, else Pillow), as mmcv's ``imrescale`` does."""
    try:
        import cv2
        return cv2.resize(img, (width, height), interpolation=cv2.INTER_LINEAR)
    except ImportError:
        pass
    try:
        from PIL import Image
    except ImportError:
        raise ValueError('the image must be resized to the model input: install opencv-python or Pillow, or give '
                         'an image of the export size (or --tensor)') from None
    return np.asarray(Image.fromarray(img[..., ::-1]).resize((width, height), Image.BILINEAR))[..., ::-1].copy()


class OnnxModel:
    """An exported detector: ``.onnx`` + its ``.onnx.json`` report (input size, NMS or not, post-processing)."""

    def __init__(self, path: str, threads: int = 0) -> None:
        import onnxruntime as ort
        self.path, self.meta_path = path, path + '.json'
        for p in (self.path, self.meta_path):
            if not os.path.isfile(p):
                raise ValueError(f'{p!r} does not exist (export with tools/deploy/export_onnx.py)')
        try:
            with open(self.meta_path) as f:
                self.meta = json.load(f)
            self.input_shape = [int(v) for v in self.meta['input_shape']]
            self.post = self.meta['postprocess']
            self.post['preprocess']  # noqa: B018 - required key
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f'{self.meta_path!r} is not a detector export report of tools/deploy/export_onnx.py '
                             f'({type(exc).__name__}: {exc})') from None
        if self.meta.get('what') != 'detector':
            raise ValueError(f'{self.path!r} is not a detector export (report says what={self.meta.get("what")!r})')
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
        _RUNNER.load_postprocess_module().check_session(self.sess, self.meta, self.path, self.meta_path)
        self.input_name = self.sess.get_inputs()[0].name

    def preprocess(self, img_bgr: np.ndarray, size: Optional[Sequence[int]] = None) -> tuple[np.ndarray, float]:
        """Keep-ratio resize into the input size, normalise, pad bottom/right with 0: ``(1, 3, H, W)``, scale."""
        pre = self.post['preprocess']
        th, tw = (int(size[0]), int(size[1])) if size else tuple(self.input_shape[2:])
        h, w = img_bgr.shape[:2]
        scale = min(th / h, tw / w)
        nh, nw = min(th, max(1, int(h * scale + 0.5))), min(tw, max(1, int(w * scale + 0.5)))
        img = img_bgr if (nh, nw) == (h, w) else _resize(img_bgr, nw, nh)
        img = img.astype(np.float32)
        if pre.get('bgr_to_rgb', True):
            img = img[..., ::-1]
        img = (img - np.asarray(pre['mean'], np.float32)) / np.asarray(pre['std'], np.float32)
        if self.dynamic:
            div = max(1, int(pre.get('pad_size_divisor', 1)))
            th, tw = -(-nh // div) * div, -(-nw // div) * div
        out = np.zeros((th, tw, 3), np.float32)
        out[:nh, :nw] = img
        return np.ascontiguousarray(out.transpose(2, 0, 1)[None]), scale

    def detect(self, x: np.ndarray, post: Any) -> dict[str, np.ndarray]:
        """Detections of one normalised ``(1, 3, H, W)`` input, in input pixels."""
        outs = self.sess.run(None, {self.input_name: x})
        if self.with_nms:
            n = int(np.asarray(outs[0]).reshape(-1)[0])
            return dict(boxes=outs[1][0, :n], scores=outs[2][0, :n], labels=outs[3][0, :n])
        return post.decode_outputs(outs, self.post, tuple(x.shape[2:]))


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('model', help='the .onnx detector (its .onnx.json report must sit next to it)')
    source = parser.add_mutually_exclusive_group()  # one input: a picture, a ready tensor, or a generated picture
    source.add_argument('--image', help='input image (.ppm/.pgm/.npy, others with OpenCV or Pillow; default: a '
                        'generated test picture)')
    source.add_argument('--tensor', metavar='NPY', help='an already normalised (1, 3, H, W) or (3, H, W) float .npy, '
                        'fed as it is (detections in input pixels); for a dynamic export H and W must be what the '
                        'export allows (multiples of its padding divisor); not with --image')
    parser.add_argument('--size', type=int, nargs=2, metavar=('H', 'W'),
                        help='input size for a dynamic export (default: the export size); a static export only '
                             'accepts its own size')
    parser.add_argument('--threads', type=int, default=0, help='ONNX Runtime threads (0: its default)')
    parser.add_argument('--score-thr', type=float, help='print/keep only detections above this score')
    parser.add_argument('--out-json', help='write the detections and timings here')
    parser.add_argument('--bench', type=int, default=0, metavar='RUNS',
                        help='time RUNS calls (network + numpy post-processing)')
    parser.add_argument('--warmup', type=int, default=10, help='untimed calls before --bench (default 10)')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args.threads < 0 or args.bench < 0 or args.warmup < 0:
        raise ValueError('--threads, --bench and --warmup must be >= 0')
    if args.size is not None and min(args.size) <= 0:
        raise ValueError(f'--size must be two positive integers H W, got {args.size[0]} {args.size[1]}')
    if args.score_thr is not None and not 0.0 <= args.score_thr <= 1.0:  # also refuses nan
        raise ValueError(f'--score-thr must be a score in [0, 1], got {args.score_thr}')
    model = OnnxModel(args.model, args.threads)
    if args.out_json:
        for what, path in (('the model', model.path), ('its report', model.meta_path), ('--image', args.image),
                           ('--tensor', args.tensor)):
            if path and _RUNNER._same_path(args.out_json, path):
                raise ValueError(f'--out-json {args.out_json!r} is the same file as {what} {path!r}: refusing to '
                                 'overwrite an input')
        folder = os.path.dirname(os.path.abspath(args.out_json))  # checked before any run: --bench can be long
        why = ('it is a folder' if os.path.isdir(args.out_json) else
               f'{folder!r} is a file' if os.path.exists(folder) and not os.path.isdir(folder) else
               f'folder {folder!r} does not exist' if not os.path.isdir(folder) else
               f'folder {folder!r} is not writable' if not os.access(folder, os.W_OK | os.X_OK) else None)
        if why:
            raise ValueError(f'--out-json {args.out_json!r} cannot be written: {why}')
    export_hw = model.input_shape[2:]
    if args.size is not None and not model.dynamic and list(args.size) != export_hw:
        raise ValueError(f'--size {args.size[0]} {args.size[1]} does not match the static model {model.path!r}, '
                         f'exported at {export_hw[0]}x{export_hw[1]}; omit --size, or export with --dynamic')
    if args.tensor:
        try:
            x = np.load(args.tensor, allow_pickle=False).astype(np.float32)
        except (OSError, ValueError, EOFError) as exc:
            raise ValueError(f'--tensor {args.tensor!r} is not a readable .npy array ({exc})') from None
        x = x[None] if x.ndim == 3 else x
        if x.ndim != 4 or x.shape[:2] != (1, 3) or (not model.dynamic and list(x.shape[2:]) != export_hw):
            raise ValueError(f'--tensor {args.tensor!r}: expected (1, 3, H, W) with H, W = {export_hw} for this '
                             f'model, got {x.shape}')
        _RUNNER.load_postprocess_module().check_input_hw(model.meta, x.shape[2:], f'--tensor {args.tensor!r}')
        scale = 1.0
    else:
        size = args.size or export_hw
        img = _RUNNER.read_image(args.image) if args.image else _RUNNER.make_test_picture(int(size[0]), int(size[1]))
        x, scale = model.preprocess(img, args.size)
    post = None if model.with_nms else _RUNNER.load_postprocess_module()
    if post is not None:
        try:
            post.check_meta(model.post)
        except ValueError as exc:
            raise ValueError(f'{model.meta_path!r}: {exc}') from None
    try:
        dets = model.detect(x, post)
    except ValueError as exc:  # the report's postprocess does not fit the model's outputs
        raise ValueError(f'{model.meta_path!r} does not describe the outputs of {model.path!r}: {exc}') from None
    keep = dets['scores'] >= (args.score_thr if args.score_thr is not None else -1.0)
    names = model.meta.get('classes')
    result: dict[str, Any] = dict(model=os.path.basename(model.path), image=args.tensor or args.image or 'generated',
                                  threads=args.threads, with_nms=model.with_nms)
    result['detections'] = [
        dict(label=int(lab), name=(names[int(lab)] if names else None), score=round(float(s), 5),
             box=[round(float(v) / scale, 2) for v in b])
        for b, s, lab in zip(dets['boxes'][keep], dets['scores'][keep], dets['labels'][keep])]
    print(f'{len(result["detections"])} detections')
    for d in result['detections'][:20]:
        print(f"  label {d['label']}{' ' + d['name'] if d['name'] else ''} score {d['score']:.3f} box {d['box']}")
    if args.bench:
        result['latency'] = _RUNNER.bench(lambda: model.detect(x, post), args.bench, args.warmup)
        lat = result['latency']
        print(f"latency over {args.bench} runs ({args.threads or 'default'} threads, network + post-processing): "
              f"median {lat['median_ms']:.2f} ms, p90 {lat['p90_ms']:.2f} ms, min {lat['min_ms']:.2f} ms")
    if args.out_json:
        with _RUNNER.atomic_file(args.out_json) as tmp, open(tmp, 'w') as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == '__main__':
    sys.exit(_RUNNER.run_main(main))
