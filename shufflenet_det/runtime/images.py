"""Images and input tensors of the runtime, in numpy (OpenCV or Pillow only where numpy cannot do it).

* :func:`read_image` - a picture file as a BGR uint8 array: binary PPM / PGM and ``.npy`` with numpy, other formats
  with OpenCV (else Pillow); ValueError naming the file for anything that is not a readable picture;
* :func:`write_ppm` / :func:`make_test_picture` - a binary PPM written atomically, a deterministic test picture;
* :func:`resize_bgr` and :func:`letterbox` - mmdet's test preprocessing (keep-ratio resize, normalise, pad
  bottom/right with 0) into a ``(1, 3, H, W)`` float32 tensor;
* :func:`load_tensor` - an already normalised ``.npy`` input.
"""
from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import numpy as np

from .io import PathLike, write_bytes_atomic

#: mmdet's ImageNet normalisation (RGB): what a report without a ``preprocess`` entry is assumed to use.
DEFAULT_PREPROCESS: dict[str, Any] = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
                                          bgr_to_rgb=True, pad_size_divisor=1)


def read_pnm(path: PathLike, what: str = 'image') -> np.ndarray:
    """A binary 8-bit PPM (P6) / PGM (P5) as a BGR uint8 image; ValueError naming ``what`` and the file for anything
    else (empty, truncated, a text PNM, a bad header). Every read stops at the end of the data."""
    path = os.fspath(path)
    with open(path, 'rb') as f:
        data = f.read()
    size = len(data)
    if size == 0:
        raise ValueError(f'{what} {path!r} is empty (0 bytes), not a PPM/PGM image')
    fields: list[bytes] = []
    pos = 0
    while len(fields) < 4:  # magic, width, height, maxval; comments skipped
        while pos < size and data[pos:pos + 1].isspace():
            pos += 1
        if pos >= size:
            raise ValueError(f'{what} {path!r}: truncated PPM/PGM header (expected magic, width, height and '
                             f'maxval, found {len(fields)} of them)')
        if data[pos:pos + 1] == b'#':
            end = data.find(b'\n', pos)
            if end < 0:
                raise ValueError(f'{what} {path!r}: truncated PPM/PGM header (a comment runs to the end of the file)')
            pos = end + 1
            continue
        end = pos
        while end < size and not data[end:end + 1].isspace() and end - pos < 32:
            end += 1
        fields.append(data[pos:end])
        pos = end
        if len(fields) == 1 and fields[0] not in (b'P5', b'P6'):
            raise ValueError(f'{what} {path!r} is not a binary PPM (P6) / PGM (P5) image (starts with {data[:8]!r})')
    try:
        w, h, maxval = int(fields[1]), int(fields[2]), int(fields[3])
    except ValueError:
        raise ValueError(f'{what} {path!r}: malformed PPM/PGM header: width, height and maxval must be integers, '
                         f'got {[f.decode("latin-1") for f in fields[1:]]}') from None
    if w <= 0 or h <= 0 or not 0 < maxval <= 255:
        raise ValueError(f'{what} {path!r}: unsupported PPM/PGM header {w}x{h} maxval {maxval} (positive sizes, '
                         '8-bit maxval 1..255)')
    if pos >= size or not data[pos:pos + 1].isspace():
        raise ValueError(f'{what} {path!r}: truncated PPM/PGM file (no pixel data after the header)')
    pos += 1  # the single whitespace after maxval
    ch = 3 if fields[0] == b'P6' else 1
    need = w * h * ch
    if size - pos < need:
        raise ValueError(f'{what} {path!r}: truncated PPM/PGM file: {w}x{h} needs {need} bytes of pixels, the file '
                         f'has {size - pos}')
    img = np.frombuffer(data, dtype=np.uint8, count=need, offset=pos).reshape(h, w, ch)
    img = np.repeat(img, 3, axis=2) if ch == 1 else img
    return np.ascontiguousarray(img[..., ::-1])  # PPM is RGB; return BGR like OpenCV


def _read_npy_image(path: str, what: str) -> np.ndarray:
    try:  # a pickled object array is refused too (never unpickled)
        img = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ValueError(f'{what} {path!r} is not a readable .npy image (an H x W x 3 uint8 BGR array): '
                         f'{exc}') from None
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f'{what} {path!r}: expected an H x W x 3 uint8 BGR array, got {img.shape} {img.dtype}')
    return np.ascontiguousarray(img)


def _decode(path: str, what: str) -> np.ndarray:
    """Other formats: OpenCV's decoder on the file's bytes (as mmcv's ``imread``), else Pillow's."""
    cv2: Any
    try:
        import cv2
    except ImportError:
        cv2 = None
    if cv2 is not None:
        data = np.fromfile(path, dtype=np.uint8)
        if data.size == 0:
            raise ValueError(f'{what} {path!r} is empty (0 bytes), not a picture')
        try:
            img = cv2.imdecode(data, cv2.IMREAD_COLOR)
        except cv2.error as exc:
            raise ValueError(f'{what} {path!r} is not a readable image (OpenCV: {str(exc).strip()[:200]})') from None
        if img is None or img.size == 0:
            raise ValueError(f'{what} {path!r} is not a readable image (empty, truncated or not a picture format '
                             'OpenCV decodes)')
        return img
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        ext = os.path.splitext(path)[1]
        raise ValueError(f'{what} {path!r}: install opencv-python or Pillow to read {ext or "such"} files, or use '
                         '.ppm / .pgm / .npy') from None
    try:
        with Image.open(path) as picture:
            return np.ascontiguousarray(np.asarray(picture.convert('RGB'))[..., ::-1])
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ValueError(f'{what} {path!r} is not a readable image (Pillow: {exc})') from None


def read_image(path: PathLike, what: str = 'image') -> np.ndarray:
    """A BGR uint8 ``H x W x 3`` image from a file (module docstring); ValueError naming ``what`` and the file when
    it is missing or not a readable picture."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f'{what} {path!r} does not exist')
    ext = os.path.splitext(path)[1].lower()
    if ext in ('.ppm', '.pgm', '.pnm'):
        return read_pnm(path, what)
    if ext == '.npy':
        return _read_npy_image(path, what)
    return _decode(path, what)


def write_ppm(path: PathLike, img_bgr: np.ndarray, what: str = 'output') -> None:
    """Write a BGR uint8 image as a binary PPM, atomically (:func:`.io.write_bytes_atomic`)."""
    h, w = img_bgr.shape[:2]
    pixels = np.ascontiguousarray(np.asarray(img_bgr, dtype=np.uint8)[..., ::-1]).tobytes()
    write_bytes_atomic(f'P6\n{w} {h}\n255\n'.encode() + pixels, path, what)


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


def resize_bgr(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bilinear resize of a BGR uint8 image (OpenCV, else Pillow), as mmcv's ``imrescale`` does."""
    cv2: Any
    try:
        import cv2
    except ImportError:
        cv2 = None
    if cv2 is not None:
        return cv2.resize(img, (width, height), interpolation=cv2.INTER_LINEAR)
    try:
        from PIL import Image
    except ImportError:
        raise ValueError('the image must be resized to the model input: install opencv-python or Pillow, or give '
                         'an image of the export size (or --tensor)') from None
    resized = Image.fromarray(np.ascontiguousarray(img[..., ::-1])).resize((width, height), Image.Resampling.BILINEAR)
    return np.ascontiguousarray(np.asarray(resized)[..., ::-1])


def fit_size(h: int, w: int, target_hw: Sequence[int]) -> tuple[int, int, float]:
    """The keep-ratio resize of an ``h x w`` picture into ``target_hw``: new height, width and the scale."""
    th, tw = int(target_hw[0]), int(target_hw[1])
    scale = min(th / h, tw / w)
    return min(th, max(1, int(h * scale + 0.5))), min(tw, max(1, int(w * scale + 0.5))), scale


def pad_to_divisor(h: int, w: int, divisor: int) -> tuple[int, int]:
    """``h`` and ``w`` rounded up to multiples of ``divisor`` (a dynamic export's padding)."""
    div = max(1, int(divisor))
    return -(-h // div) * div, -(-w // div) * div


def letterbox(img_bgr: np.ndarray, target_hw: Sequence[int], pre: Mapping[str, Any],
              dynamic: bool = False) -> tuple[np.ndarray, float]:
    """mmdet's test preprocessing of a BGR uint8 picture: keep-ratio resize into ``target_hw``, normalise with
    ``pre`` (``mean``, ``std``, ``bgr_to_rgb``), pad bottom/right with 0 to ``target_hw`` - or, for a dynamic export,
    to the resized size rounded up to ``pre['pad_size_divisor']``. Returns the ``(1, 3, H, W)`` float32 tensor and
    the resize scale."""
    h, w = img_bgr.shape[:2]
    nh, nw, scale = fit_size(h, w, target_hw)
    img = img_bgr if (nh, nw) == (h, w) else resize_bgr(img_bgr, nw, nh)
    img = img.astype(np.float32)
    if pre.get('bgr_to_rgb', True):
        img = img[..., ::-1]
    img = (img - np.asarray(pre['mean'], np.float32)) / np.asarray(pre['std'], np.float32)
    th, tw = (pad_to_divisor(nh, nw, int(pre.get('pad_size_divisor', 1) or 1)) if dynamic
              else (int(target_hw[0]), int(target_hw[1])))
    out = np.zeros((th, tw, 3), np.float32)
    out[:nh, :nw] = img
    return np.ascontiguousarray(out.transpose(2, 0, 1)[None]), scale


def load_tensor(path: PathLike, what: str = '--tensor') -> np.ndarray:
    """An already normalised input from a ``.npy`` file, ``(3, H, W)`` or ``(1, 3, H, W)``, as a contiguous
    ``(1, 3, H, W)`` float32 array; ValueError naming ``what`` and the file when it is missing, not a numeric array
    or of another layout (whether a model takes its size is the model's check)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f'{what} {path!r} does not exist')
    try:
        tensor = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ValueError(f'{what} {path!r} is not a readable .npy array ({exc})') from None
    tensor = tensor[None] if tensor.ndim == 3 else tensor
    if tensor.ndim != 4 or tensor.shape[:2] != (1, 3) or not np.issubdtype(tensor.dtype, np.number):
        raise ValueError(f'{what} {path!r}: expected a (3, H, W) or (1, 3, H, W) float array, got {tensor.shape} '
                         f'{tensor.dtype}')
    return np.ascontiguousarray(tensor, dtype=np.float32)
