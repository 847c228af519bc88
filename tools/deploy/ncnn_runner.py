"""Run (and time) an ncnn model exported by tools/deploy/export_ncnn.py - numpy + the ncnn wheel only, no torch.

Works unchanged on an ARM board (``pip install ncnn numpy``): copy this file together with
``shufflenet_det/runtime/postprocess.py`` (next to it, or keep the repository layout) and the model's
``.param``, ``.bin`` and ``.json``. Detector models (raw head outputs) are post-processed here - priors, box
decoding, class-aware NMS, as mmdet's RetinaHead or the lite detectors' GFL head - with the parameters stored in the
``.json`` side-car; backbone models print their feature shapes.

Images: ``.ppm``/``.pgm`` (binary) and ``.npy`` (H x W x 3 uint8, BGR) are read with numpy; other formats through
OpenCV or Pillow when one of them is installed. ``--generate`` writes and uses a synthetic test picture instead.

Errors (a missing or malformed file, a --size the static model was not exported at) end as one ``error:`` line with
exit status 2; SIGTERM / SIGINT exit with 143 / 130 and leave no half-written output (``--debug`` shows tracebacks).

Examples::

    python tools/deploy/ncnn_runner.py work_dirs/deploy/retinanet_mini.param --image demo.ppm --out-json dets.json
    python tools/deploy/ncnn_runner.py work_dirs/deploy/shufflenetv2_backbone.param --bench 100 --threads 4
"""
from __future__ import annotations

import argparse
import contextlib
import errno
import importlib.util
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def load_postprocess_module() -> Any:
    """``numpy_postprocess`` loaded by file path (next to this script, or in the repository) - never the package,
    whose ``__init__`` imports torch."""
    candidates = [os.path.join(HERE, 'postprocess.py'),
                  os.path.join(HERE, '..', '..', 'shufflenet_det', 'runtime', 'postprocess.py')]
    for path in candidates:
        if os.path.isfile(path):
            spec = importlib.util.spec_from_file_location('_shufflenet_det_numpy_postprocess', path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
    raise FileNotFoundError('numpy_postprocess.py not found next to ncnn_runner.py nor in the repository; copy '
                            'shufflenet_det/runtime/postprocess.py next to this script')


# ---------------------------------------------------------------------------------------------------- images
def _read_pnm(path: str) -> np.ndarray:
    """A binary 8-bit PPM (P6) / PGM (P5) as a BGR uint8 image; ValueError naming the file for anything else
    (empty, truncated, a text PNM, a bad header). Every read stops at the end of the data."""
    with open(path, 'rb') as f:
        data = f.read()
    size = len(data)
    if size == 0:
        raise ValueError(f'--image {path!r} is empty (0 bytes), not a PPM/PGM image')
    fields: list[bytes] = []
    pos = 0
    while len(fields) < 4:  # magic, width, height, maxval; comments skipped
        while pos < size and data[pos:pos + 1].isspace():
            pos += 1
        if pos >= size:
            raise ValueError(f'--image {path!r}: truncated PPM/PGM header (expected magic, width, height and '
                             f'maxval, found {len(fields)} of them)')
        if data[pos:pos + 1] == b'#':
            end = data.find(b'\n', pos)
            if end < 0:
                raise ValueError(f'--image {path!r}: truncated PPM/PGM header (a comment runs to the end of the file)')
            pos = end + 1
            continue
        end = pos
        while end < size and not data[end:end + 1].isspace() and end - pos < 32:
            end += 1
        fields.append(data[pos:end])
        pos = end
        if len(fields) == 1 and fields[0] not in (b'P5', b'P6'):
            raise ValueError(f'--image {path!r} is not a binary PPM (P6) / PGM (P5) image (starts with '
                             f'{data[:8]!r})')
    try:
        w, h, maxval = int(fields[1]), int(fields[2]), int(fields[3])
    except ValueError:
        raise ValueError(f'--image {path!r}: malformed PPM/PGM header: width, height and maxval must be integers, '
                         f'got {[f.decode("latin-1") for f in fields[1:]]}') from None
    if w <= 0 or h <= 0 or not 0 < maxval <= 255:
        raise ValueError(f'--image {path!r}: unsupported PPM/PGM header {w}x{h} maxval {maxval} (positive sizes, '
                         '8-bit maxval 1..255)')
    if pos >= size or not data[pos:pos + 1].isspace():
        raise ValueError(f'--image {path!r}: truncated PPM/PGM file (no pixel data after the header)')
    pos += 1  # the single whitespace after maxval
    ch = 3 if fields[0] == b'P6' else 1
    need = w * h * ch
    if size - pos < need:
        raise ValueError(f'--image {path!r}: truncated PPM/PGM file: {w}x{h} needs {need} bytes of pixels, the file '
                         f'has {size - pos}')
    img = np.frombuffer(data, dtype=np.uint8, count=need, offset=pos).reshape(h, w, ch)
    img = np.repeat(img, 3, axis=2) if ch == 1 else img
    return np.ascontiguousarray(img[..., ::-1])  # PPM is RGB; return BGR like OpenCV


@contextlib.contextmanager
def atomic_file(path: str) -> Iterator[str]:
    """Yield a hidden temporary sibling of ``path`` (``.<name>.<pid>.<random>.tmp``, the project's naming) that
    replaces ``path`` when the block succeeds; removed on any exception, SIGTERM / SIGINT included."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise ValueError(f'output {path!r} is a folder; give a file path')
    if not os.path.isdir(folder):
        raise ValueError(f'output {path!r}: folder {folder!r} does not exist')
    fd, tmp = tempfile.mkstemp(prefix=f'.{os.path.basename(path)}.{os.getpid()}.', suffix='.tmp', dir=folder)
    os.close(fd)
    try:
        yield tmp
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_ppm(path: str, img_bgr: np.ndarray) -> None:
    """Write a BGR uint8 image as binary PPM (atomically)."""
    h, w = img_bgr.shape[:2]
    with atomic_file(path) as tmp, open(tmp, 'wb') as f:
        f.write(f'P6\n{w} {h}\n255\n'.encode())
        f.write(np.ascontiguousarray(img_bgr[..., ::-1]).tobytes())


def read_image(path: str) -> np.ndarray:
    """BGR uint8 H x W x 3 image."""
    if not os.path.isfile(path):
        raise ValueError(f'--image {path!r} does not exist')
    ext = os.path.splitext(path)[1].lower()
    if ext in ('.ppm', '.pgm', '.pnm'):
        return _read_pnm(path)
    if ext == '.npy':
        try:  # a pickled object array is refused too (never unpickled)
            img = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise ValueError(f'--image {path!r} is not a readable .npy image (an H x W x 3 uint8 BGR array): '
                             f'{exc}') from None
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise ValueError(f'--image {path!r}: expected an H x W x 3 uint8 BGR array, got {img.shape} {img.dtype}')
        return np.ascontiguousarray(img)
    try:
        import cv2
        img = cv2.imread(path, cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f'--image {path!r} is not a readable image (OpenCV cannot decode it)')
        return img
    except ImportError:
        pass
    try:
        from PIL import Image, UnidentifiedImageError
        try:
            return np.ascontiguousarray(np.asarray(Image.open(path).convert('RGB'))[..., ::-1])
        except (UnidentifiedImageError, OSError) as exc:
            raise ValueError(f'--image {path!r} is not a readable image ({exc})') from None
    except ImportError:
        raise ValueError(f'{path}: install opencv-python or Pillow to read {ext} files, or use .ppm / .npy') from None


def make_test_picture(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A deterministic BGR uint8 test picture: a grainy colour ramp with a few solid square blocks on it."""
    rng = np.random.RandomState(seed)
    ramp_y = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    ramp_x = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :, None]
    picture = 40.0 + ramp_y * rng.uniform(0, 120, size=3) + ramp_x * rng.uniform(0, 120, size=3)
    picture = picture + rng.normal(0.0, 10.0, size=(height, width, 3))
    short = min(height, width)
    for _ in range(rng.randint(3, 8)):
        side = rng.randint(max(2, short // 8), max(3, short // 3))
        top, left = rng.randint(0, max(1, height - side)), rng.randint(0, max(1, width - side))
        picture[top:top + side, left:left + side] = rng.randint(0, 256, size=3)
    return np.clip(picture, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------------- model
class NcnnModel:
    """An exported model: ``.param`` + ``.bin`` + ``.json`` side-car (blob names, input size, post-processing)."""

    def __init__(self, param: str, threads: int = 1, fp16: bool = True) -> None:
        import ncnn
        self.ncnn = ncnn
        base = param[:-len('.param')] if param.endswith('.param') else param
        self.param, self.bin, self.meta_path = base + '.param', base + '.bin', base + '.json'
        for path in (self.param, self.bin, self.meta_path):
            if not os.path.isfile(path):
                raise ValueError(f'{path!r} does not exist (export with tools/deploy/export_ncnn.py)')
        try:
            with open(self.meta_path) as f:
                self.meta = json.load(f)
            self.input_shape = [int(v) for v in self.meta['input_shape']]
            self.meta['input_blob'], self.meta['output_blobs']  # noqa: B018 - required keys
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f'{self.meta_path!r} is not an export report of tools/deploy/export_ncnn.py '
                             f'({type(exc).__name__}: {exc})') from None
        self.dynamic = bool(self.meta.get('dynamic'))
        self.net = ncnn.Net()
        self.net.opt.num_threads = int(threads)
        if not fp16:
            self.net.opt.use_fp16_storage = self.net.opt.use_fp16_packed = False
            self.net.opt.use_fp16_arithmetic = False
        if self.net.load_param(self.param) != 0 or self.net.load_model(self.bin) != 0:
            raise ValueError(f'ncnn cannot load {self.param} / {self.bin}')
        self.input_blob = self.meta['input_blob']
        self.output_blobs = self.meta['output_blobs']
        self.is_detector = self.meta.get('what') == 'detector'

    def preprocess(self, img_bgr: np.ndarray, size: Optional[Sequence[int]] = None) -> tuple[Any, float, Any]:
        """Keep-ratio resize to fit the input size, normalise, pad bottom/right with 0 (mmdet's test order).

        Returns ``(mat, scale, keep)``: ``keep`` holds the buffers ncnn reads without copying.
        """
        ncnn = self.ncnn
        pre = (self.meta.get('postprocess') or {}).get('preprocess') or self.meta.get('preprocess') or dict(
            mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_size_divisor=1)
        th, tw = (int(size[0]), int(size[1])) if size else tuple(self.meta['input_shape'][2:])
        h, w = img_bgr.shape[:2]
        scale = min(th / h, tw / w)
        nh, nw = max(1, int(h * scale + 0.5)), max(1, int(w * scale + 0.5))
        img = np.ascontiguousarray(img_bgr)
        pixel = ncnn.Mat.PixelType.PIXEL_BGR2RGB if pre.get('bgr_to_rgb', True) else ncnn.Mat.PixelType.PIXEL_BGR
        mat = ncnn.Mat.from_pixels_resize(img, pixel, w, h, min(nw, tw), min(nh, th))
        mat.substract_mean_normalize([float(m) for m in pre['mean']], [1.0 / float(s) for s in pre['std']])
        if self.meta.get('dynamic'):
            div = max(1, int(pre.get('pad_size_divisor', 1)))
            th, tw = -(-mat.h // div) * div, -(-mat.w // div) * div
        padded = ncnn.copy_make_border(mat, 0, th - mat.h, 0, tw - mat.w, ncnn.BorderType.BORDER_CONSTANT, 0.0)
        return padded, scale, (img, mat)

    def run(self, mat: Any) -> list[np.ndarray]:
        """One forward pass; the outputs in the export's order."""
        ex = self.net.create_extractor()
        ex.input(self.input_blob, mat)
        outs = []
        for name in self.output_blobs:
            ret, out = ex.extract(name)
            if ret != 0:
                raise RuntimeError(f'ncnn extract({name!r}) failed with code {ret}')
            outs.append(np.array(out, copy=True))
        return outs

    def detect(self, img_bgr: np.ndarray, post: Any, size: Optional[Sequence[int]] = None) -> dict[str, np.ndarray]:
        """Detections in original-image pixels."""
        mat, scale, keep = self.preprocess(img_bgr, size)
        outs = self.run(mat)
        dets = post.decode_outputs(outs, self.meta['postprocess'], (mat.h, mat.w))
        dets['boxes'] = dets['boxes'] / scale
        del keep
        return dets


def bench(fn: Any, runs: int, warmup: int) -> dict[str, float]:
    """Latency statistics of ``fn()`` in milliseconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return dict(median_ms=statistics.median(times), p90_ms=times[min(len(times) - 1, int(0.9 * len(times)))],
                min_ms=times[0], mean_ms=statistics.fmean(times), runs=runs, warmup=warmup)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('model', help='the .param file (its .bin and .json must sit next to it)')
    source = parser.add_mutually_exclusive_group()  # one input: a picture, a ready tensor, or a generated picture
    source.add_argument('--image', help='input image (.ppm/.pgm/.npy, others with OpenCV or Pillow)')
    source.add_argument('--tensor', metavar='NPY',
                        help='an already normalised float input, (3, H, W) or (1, 3, H, W) .npy, fed as it is '
                             '(no resize / normalisation; detections in input pixels)')
    source.add_argument('--generate', metavar='PPM',
                        help='write a synthetic test picture to this .ppm and use it as input')
    parser.add_argument('--size', type=int, nargs=2, metavar=('H', 'W'),
                        help='input size for a dynamic model (default: the export size); a static model only '
                             'accepts its export size (recorded in <name>.json)')
    parser.add_argument('--threads', type=int, default=1, help='ncnn threads (default 1)')
    parser.add_argument('--no-fp16', action='store_true', help='disable fp16 storage/arithmetic')
    parser.add_argument('--score-thr', type=float, help='print/keep only detections above this score')
    parser.add_argument('--out-json', help='write the detections (or feature shapes) and timings here')
    parser.add_argument('--bench', type=int, default=0, metavar='RUNS', help='time RUNS forward passes')
    parser.add_argument('--warmup', type=int, default=10, help='untimed passes before --bench (default 10)')
    return parser.parse_args(argv)


def _same_path(a: str, b: str) -> bool:
    try:
        return os.path.realpath(a) == os.path.realpath(b) or (os.path.exists(a) and os.path.samefile(a, b))
    except OSError:
        return False


def _load_tensor(path: str, model: NcnnModel) -> np.ndarray:
    try:
        tensor = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise ValueError(f'--tensor {path!r} does not exist') from None
    except (ValueError, OSError, EOFError) as exc:
        raise ValueError(f'--tensor {path!r} is not a readable .npy array ({exc})') from None
    tensor = tensor.astype(np.float32)
    if tensor.ndim == 4 and tensor.shape[0] == 1:
        tensor = tensor[0]
    if tensor.ndim != 3 or tensor.shape[0] != 3:
        raise ValueError(f'--tensor {path!r}: expected (3, H, W) or (1, 3, H, W), got {tensor.shape}')
    if not model.dynamic and list(tensor.shape[1:]) != model.input_shape[2:]:
        raise ValueError(f'--tensor {path!r} is {tensor.shape[1]}x{tensor.shape[2]}, but the static model '
                         f'{model.param!r} takes {model.input_shape[2]}x{model.input_shape[3]} inputs')
    return np.ascontiguousarray(tensor)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args.threads < 1 or args.bench < 0 or args.warmup < 0:
        print('error: --threads must be >= 1, --bench and --warmup >= 0', file=sys.stderr)
        return 2
    if args.size is not None and min(args.size) <= 0:
        print(f'error: --size must be two positive integers H W, got {args.size[0]} {args.size[1]}', file=sys.stderr)
        return 2
    try:
        model = NcnnModel(args.model, threads=args.threads, fp16=not args.no_fp16)
        for option, out in (('--out-json', args.out_json), ('--generate', args.generate)):
            for what, path in (('the model', model.param), ('its weights', model.bin), ('its report', model.meta_path),
                               ('--image', args.image), ('--tensor', args.tensor)):
                if out and path and _same_path(out, path):
                    raise ValueError(f'{option} {out!r} is the same file as {what} {path!r}: refusing to overwrite '
                                     'an input')
        export_hw = model.input_shape[2:]
        if args.size is not None and not model.dynamic and list(args.size) != export_hw:
            raise ValueError(f'--size {args.size[0]} {args.size[1]} does not match the static model '
                             f'{model.param!r}, exported at {export_hw[0]}x{export_hw[1]} (see {model.meta_path}); '
                             'omit --size, or export with --dynamic')
        shape = args.size or export_hw
        tensor = None
        if args.tensor:
            tensor = _load_tensor(args.tensor, model)
            img = None
        elif args.image:
            img = read_image(args.image)
        else:
            img = make_test_picture(int(shape[0]), int(shape[1]))
            if args.generate:
                write_ppm(args.generate, img)
    except ValueError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    result: dict[str, Any] = dict(model=os.path.basename(model.param),
                                  image=args.tensor or args.image or args.generate or 'generated',
                                  threads=args.threads, fp16=not args.no_fp16)
    post = load_postprocess_module() if model.is_detector else None
    if tensor is not None:
        import ncnn
        mat, scale, keep_alive = ncnn.Mat(tensor), 1.0, tensor  # Mat(arr) does not copy: keep tensor alive
    else:
        mat, scale, keep_alive = model.preprocess(img, args.size)
    hw = (mat.h, mat.w)

    def forward() -> Any:
        outs = model.run(mat)
        if post is None:
            return outs
        return post.decode_outputs(outs, model.meta['postprocess'], hw)

    if model.is_detector:
        dets = forward()
        dets['boxes'] = dets['boxes'] / scale
        keep = dets['scores'] >= (args.score_thr if args.score_thr is not None else -1.0)
        names = model.meta.get('classes')
        result['detections'] = [
            dict(label=int(lab), name=(names[int(lab)] if names else None), score=round(float(s), 5),
                 box=[round(float(v), 2) for v in b])
            for b, s, lab in zip(dets['boxes'][keep], dets['scores'][keep], dets['labels'][keep])]
        print(f'{len(result["detections"])} detections')
        for d in result['detections'][:20]:
            print(f"  label {d['label']}{' ' + d['name'] if d['name'] else ''} score {d['score']:.3f} box {d['box']}")
    else:
        outs = forward()
        result['outputs'] = {name: list(o.shape) for name, o in zip(model.output_blobs, outs)}
        print('outputs: ' + ', '.join(f'{k} {v}' for k, v in result['outputs'].items()))
    if args.bench:
        result['latency'] = bench(forward, args.bench, args.warmup)  # detectors: network + post-processing
        lat = result['latency']
        print(f"latency over {args.bench} runs ({args.threads} threads): median {lat['median_ms']:.2f} ms, "
              f"p90 {lat['p90_ms']:.2f} ms, min {lat['min_ms']:.2f} ms")
    del keep_alive
    if args.out_json:
        with atomic_file(args.out_json) as tmp, open(tmp, 'w') as f:
            json.dump(result, f, indent=2)
    return 0


# ---------------------------------------------------------------------------------------------------- errors
# The policy of shufflenet_det.utils.cli, repeated here so this file keeps running without the package (and torch):
# a user's error ends as one `error: <message>` line with exit status 2; SIGTERM / SIGINT unwind the program so the
# temporary output files are removed (exit 143 / 130); --debug or SHUFFLENET_DET_DEBUG=1 shows the traceback.
class Interrupted(BaseException):
    """Raised on SIGTERM / SIGINT so that ``finally`` blocks clean up."""

    def __init__(self, signum: int) -> None:
        super().__init__(f'interrupted by {signal.Signals(signum).name}')
        self.signum = signum


def _raise_interrupted(signum: int, frame: Any) -> None:
    raise Interrupted(signum)


def _message(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename is not None:
        reason = {errno.ENOSPC: 'no space left on the device', errno.EROFS: 'the file system is read-only',
                  errno.EACCES: 'permission denied', errno.ENOENT: 'no such file or folder'}.get(
                      exc.errno or -1, exc.strerror or str(exc))
        return f'{exc.filename}: {reason}'
    return str(exc).strip() or type(exc).__name__


def run_main(main: Callable[[Optional[Sequence[str]]], Any], argv: Optional[Sequence[str]] = None) -> int:
    """``main(argv)`` under the error policy above; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = os.environ.get('SHUFFLENET_DET_DEBUG') == '1' or '--debug' in args
    args = [a for a in args if a != '--debug']
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            signal.signal(sig, _raise_interrupted)
        except ValueError:  # not the main thread
            pass
    try:
        result = main(args)
    except Interrupted as exc:
        print(f'error: {exc}; nothing half-written was left behind', file=sys.stderr)
        return 128 + exc.signum
    except (ValueError, OSError) as exc:
        if debug:
            raise
        print(f'error: {_message(exc)}', file=sys.stderr)
        return 2
    return result if isinstance(result, int) else 0


if __name__ == '__main__':
    sys.exit(run_main(main))
