"""A deterministic, COCO-format synthetic detection dataset ("mini COCO") that trains on a CPU in minutes.

Every image holds a few non-overlapping objects, each a solid shape of one class (circle, square, triangle, ...) with
its own colour, size and aspect ratio, on a grey background with optional low-contrast clutter and pixel noise. Boxes
and masks come from the rasterised shapes themselves, so the annotations are exact. The layout is COCO 2017's::

    <root>/annotations/instances_train2017.json
    <root>/annotations/instances_val2017.json
    <root>/train2017/000000000001.png ...
    <root>/val2017/000000000001.png ...

Image ``i`` of a split is drawn from its own random stream, seeded by ``(seed, split, i)``: the same spec always gives
the same JSON and the same pixels, and changing one split's count leaves the other split untouched. The whole tree is
written into a temporary sibling folder and renamed into place (:func:`shufflenet_det.utils.io.atomic_directory`), so
a crash never leaves a half-written dataset.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image, ImageDraw

from ..utils.io import atomic_directory, write_text_atomic

GENERATOR_NAME = 'shufflenet_det mini COCO'
SPLITS = ('train2017', 'val2017')
IMAGE_FORMATS = ('png', 'jpg')

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 (inclusive pixel bounds of the shape)


def _ellipse(draw: ImageDraw.ImageDraw, b: Box) -> None:
    draw.ellipse(b, fill=255)


def _rectangle(draw: ImageDraw.ImageDraw, b: Box) -> None:
    draw.rectangle(b, fill=255)


def _triangle(draw: ImageDraw.ImageDraw, b: Box) -> None:
    x0, y0, x1, y1 = b
    draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=255)


def _cross(draw: ImageDraw.ImageDraw, b: Box) -> None:
    x0, y0, x1, y1 = b
    tw, th = (x1 - x0) / 3, (y1 - y0) / 3
    draw.rectangle((x0 + tw, y0, x1 - tw, y1), fill=255)
    draw.rectangle((x0, y0 + th, x1, y1 - th), fill=255)


def _diamond(draw: ImageDraw.ImageDraw, b: Box) -> None:
    x0, y0, x1, y1 = b
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    draw.polygon([(cx, y0), (x1, cy), (cx, y1), (x0, cy)], fill=255)


def _ring(draw: ImageDraw.ImageDraw, b: Box) -> None:
    width = max(2, int(round(min(b[2] - b[0], b[3] - b[1]) / 6)))
    draw.ellipse(b, outline=255, width=width)


@dataclass(frozen=True)
class ShapeClass:
    """One object class: its name, base colour (RGB) and how to rasterise it into a box."""

    name: str
    color: tuple[int, int, int]
    draw: Callable[[ImageDraw.ImageDraw, Box], None]


#: Every class the generator can draw, with saturated colours far from the grey background and from each other.
SHAPE_CLASSES: dict[str, ShapeClass] = {c.name: c for c in (
    ShapeClass('circle', (220, 40, 40), _ellipse),
    ShapeClass('square', (40, 190, 60), _rectangle),
    ShapeClass('triangle', (40, 80, 230), _triangle),
    ShapeClass('cross', (235, 205, 30), _cross),
    ShapeClass('diamond', (200, 50, 210), _diamond),
    ShapeClass('ring', (30, 200, 210), _ring),
)}
DEFAULT_CLASSES = ('circle', 'square', 'triangle', 'cross')


@dataclass(frozen=True)
class MiniCocoSpec:
    """Everything that determines the generated dataset (stored in the JSON ``info.generator`` field).

    Sizes are the longer box side in pixels, drawn log-uniformly in ``[min_size, max_size]``; the other side is
    shorter by an aspect factor drawn in ``[1, max_aspect]``. ``clutter`` (0..1) scales the background distractors
    (grey lines and blobs) and the Gaussian pixel noise.
    """

    num_train: int = 400
    num_val: int = 100
    image_width: int = 256
    image_height: int = 256
    min_objects: int = 2
    max_objects: int = 5
    min_size: int = 28
    max_size: int = 96
    max_aspect: float = 1.5
    classes: tuple[str, ...] = DEFAULT_CLASSES
    clutter: float = 0.5
    seed: int = 0
    image_format: str = 'png'
    version: int = field(default=1)

    def __post_init__(self) -> None:
        object.__setattr__(self, 'classes', tuple(self.classes))
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first bad option and what is allowed."""
        for name in ('num_train', 'num_val'):
            _check_int(name, getattr(self, name), 1)
        for name in ('image_width', 'image_height'):
            _check_int(name, getattr(self, name), 32)
        _check_int('min_objects', self.min_objects, 1)
        _check_int('max_objects', self.max_objects, self.min_objects,
                   f'>= min_objects ({self.min_objects})')
        _check_int('min_size', self.min_size, 8)
        _check_int('max_size', self.max_size, self.min_size, f'>= min_size ({self.min_size})')
        short = min(self.image_width, self.image_height)
        if self.max_size > short // 2:
            raise ValueError(f'max_size={self.max_size} must be at most half the shorter image side ({short // 2})')
        if not isinstance(self.max_aspect, (int, float)) or not 1.0 <= self.max_aspect <= 3.0:
            raise ValueError(f'max_aspect={self.max_aspect!r} must be a number in [1, 3]')
        if not isinstance(self.clutter, (int, float)) or not 0.0 <= self.clutter <= 1.0:
            raise ValueError(f'clutter={self.clutter!r} must be a number in [0, 1]')
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ValueError(f'seed={self.seed!r} must be a non-negative int')
        if self.image_format not in IMAGE_FORMATS:
            raise ValueError(f'image_format={self.image_format!r} is not supported; allowed: {list(IMAGE_FORMATS)}')
        if not self.classes or len(set(self.classes)) != len(self.classes):
            raise ValueError(f'classes={list(self.classes)} must be a non-empty list of unique names')
        unknown = [c for c in self.classes if c not in SHAPE_CLASSES]
        if unknown:
            raise ValueError(f'classes {unknown} are unknown; allowed: {list(SHAPE_CLASSES)}')
        # Objects never overlap. Guarantee that min_objects boxes of max_size always fit (a grid packing exists);
        # beyond that, an object that finds no free place after many tries is dropped (see _place_boxes).
        per_row = self.image_width // (self.max_size + 3)
        per_col = self.image_height // (self.max_size + 3)
        if per_row * per_col < self.min_objects:
            raise ValueError(f'min_objects={self.min_objects} objects of max_size={self.max_size} do not fit without '
                             f'overlap in a {self.image_width}x{self.image_height} image; lower one of them or '
                             'enlarge the image')

    def to_dict(self) -> dict[str, Any]:
        """The spec as JSON-ready values (what the annotation files record)."""
        d = asdict(self)
        d['classes'] = list(self.classes)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MiniCocoSpec:
        """The spec of :meth:`to_dict`'s output; ValueError naming unknown or invalid options."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f'unknown mini COCO options {unknown}; allowed: {sorted(known)}')
        return cls(**d)


def _check_int(name: str, value: Any, minimum: int, what: str | None = None) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f'{name}={value!r} must be an int {what or f">= {minimum}"}')


# --------------------------------------------------------------------------------------------- drawing
def _background(rng: np.random.Generator, spec: MiniCocoSpec) -> Image.Image:
    w, h = spec.image_width, spec.image_height
    level = rng.uniform(90, 170)
    tint = rng.uniform(-8, 8, size=3)
    img = Image.fromarray(np.clip(np.full((h, w, 3), level) + tint, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(int(round(spec.clutter * 12))):
        shade = int(np.clip(level + rng.uniform(-45, 45), 0, 255))
        x0, y0 = rng.uniform(0, w), rng.uniform(0, h)
        if rng.random() < 0.5:
            draw.line((x0, y0, rng.uniform(0, w), rng.uniform(0, h)), fill=(shade,) * 3,
                      width=int(rng.integers(1, 4)))
        else:
            r = rng.uniform(3, spec.min_size / 2)
            draw.ellipse((x0 - r, y0 - r, x0 + r, y0 + r), fill=(shade,) * 3)
    return img


def _place_boxes(rng: np.random.Generator, spec: MiniCocoSpec, count: int) -> list[Box]:
    """Up to ``count`` boxes inside the image, at least 2 px apart; an object with no free place is dropped."""
    boxes: list[Box] = []
    lo, hi = np.log(spec.min_size), np.log(spec.max_size)
    for _ in range(count):
        for _attempt in range(200):
            long_side = float(np.exp(rng.uniform(lo, hi)))
            short_side = max(spec.min_size * 0.5, long_side / rng.uniform(1.0, spec.max_aspect))
            bw, bh = (long_side, short_side) if rng.random() < 0.5 else (short_side, long_side)
            bw, bh = int(round(bw)), int(round(bh))
            x0 = int(rng.integers(0, spec.image_width - bw + 1))
            y0 = int(rng.integers(0, spec.image_height - bh + 1))
            box = (x0, y0, x0 + bw - 1, y0 + bh - 1)
            if all(box[0] > b[2] + 2 or box[2] < b[0] - 2 or box[1] > b[3] + 2 or box[3] < b[1] - 2
                   for b in boxes):
                boxes.append(box)
                break
    return boxes


def _mask_to_rle(mask: np.ndarray) -> dict[str, Any]:
    from pycocotools import mask as mask_utils
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {'size': [int(s) for s in rle['size']], 'counts': rle['counts'].decode('ascii')}


def render_image(spec: MiniCocoSpec, split_index: int, image_index: int) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Draw one image; return its HxWx3 uint8 pixels and its objects (``category`` index, ``bbox`` xywh, ``area``,
    ``segmentation`` RLE)."""
    rng = np.random.default_rng([spec.seed, split_index, image_index])
    img = _background(rng, spec)
    count = int(rng.integers(spec.min_objects, spec.max_objects + 1))
    for _layout in range(100):  # validate() guarantees min_objects fit; random placement rarely needs a retry
        boxes = _place_boxes(rng, spec, count)
        if len(boxes) >= spec.min_objects:
            break
    else:
        raise RuntimeError(f'could not place {spec.min_objects} objects in image {image_index} of split {split_index}')
    pixels = np.asarray(img).copy()
    objects = []
    for box in boxes:
        cat = int(rng.integers(len(spec.classes)))
        shape = SHAPE_CLASSES[spec.classes[cat]]
        mask_img = Image.new('L', (spec.image_width, spec.image_height), 0)
        shape.draw(ImageDraw.Draw(mask_img), box)
        mask = np.asarray(mask_img) > 0
        color = np.clip(np.array(shape.color) + rng.integers(-20, 21, size=3), 0, 255)
        pixels[mask] = color.astype(np.uint8)
        ys, xs = np.nonzero(mask)
        x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())
        objects.append(dict(category=cat, bbox=[x0, y0, x1 - x0 + 1, y1 - y0 + 1], area=int(mask.sum()),
                            segmentation=_mask_to_rle(mask)))
    if spec.clutter > 0:
        noise = rng.normal(0.0, 10.0 * spec.clutter, size=pixels.shape)
        pixels = np.clip(pixels.astype(np.float64) + noise, 0, 255).astype(np.uint8)
    return pixels, objects


def build_split(spec: MiniCocoSpec, split: str, image_dir: Path | None) -> dict[str, Any]:
    """The COCO instances dict of ``split``; images are written into ``image_dir`` unless it is None."""
    if split not in SPLITS:
        raise ValueError(f'split={split!r} must be one of {list(SPLITS)}')
    split_index = SPLITS.index(split)
    count = spec.num_train if split == 'train2017' else spec.num_val
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for i in range(count):
        image_id = i + 1
        file_name = f'{image_id:012d}.{spec.image_format}'
        pixels, objects = render_image(spec, split_index, i)
        if image_dir is not None:
            save_kwargs: dict[str, Any] = {'quality': 95} if spec.image_format == 'jpg' else {}
            Image.fromarray(pixels).save(image_dir / file_name, **save_kwargs)
        images.append(dict(id=image_id, file_name=file_name, width=spec.image_width, height=spec.image_height))
        for obj in objects:
            annotations.append(dict(id=len(annotations) + 1, image_id=image_id, category_id=obj['category'] + 1,
                                    bbox=obj['bbox'], area=obj['area'], iscrowd=0,
                                    segmentation=obj['segmentation']))
    return dict(
        info=dict(description=f'{GENERATOR_NAME} ({split})', version=str(spec.version),
                  generator=dict(name=GENERATOR_NAME, spec=spec.to_dict())),
        licenses=[],
        images=images,
        annotations=annotations,
        categories=[dict(id=i + 1, name=name, supercategory='shape') for i, name in enumerate(spec.classes)],
    )


# --------------------------------------------------------------------------------------------- on disk
def annotation_path(root: str | os.PathLike, split: str) -> Path:
    """``<root>/annotations/instances_<split>.json``."""
    return Path(root) / 'annotations' / f'instances_{split}.json'


def read_spec(root: str | os.PathLike) -> MiniCocoSpec | None:
    """The spec a complete generated dataset at ``root`` was made with, or None if ``root`` is not one."""
    specs = []
    for split in SPLITS:
        path = annotation_path(root, split)
        try:
            with open(path, encoding='utf-8') as f:
                gen = json.load(f).get('info', {}).get('generator', {})
        except (OSError, ValueError, AttributeError):
            return None
        if not isinstance(gen, dict) or gen.get('name') != GENERATOR_NAME:
            return None
        specs.append(gen.get('spec'))
    if specs[0] != specs[1] or not isinstance(specs[0], dict):
        return None
    try:
        return MiniCocoSpec.from_dict(specs[0])
    except (TypeError, ValueError):
        return None


def generate(root: str | os.PathLike, spec: MiniCocoSpec, overwrite: bool = False) -> Path:
    """Write the dataset of ``spec`` at ``root`` atomically (:func:`shufflenet_det.utils.io.atomic_directory`) and
    return ``root``.

    Raises FileExistsError if ``root`` exists and ``overwrite`` is False, and - ``overwrite`` or not - if it is a
    file, or a folder with content that is not a dataset of this generator: only an empty folder or an earlier
    generated dataset is ever replaced, never a user's own files.
    """
    root = Path(root)
    if root.exists() or root.is_symlink():
        if not root.is_dir():
            raise FileExistsError(f'{str(root)!r} exists and is a file, not a dataset folder: refusing to replace it '
                                  '(choose another --out)')
        if overwrite and any(root.iterdir()) and read_spec(root) is None:
            raise FileExistsError(f'{str(root)!r} is a folder with other content, not a dataset made by this '
                                  'generator: refusing to replace it even with --overwrite (choose another --out)')
    with atomic_directory(root, overwrite=overwrite, what='dataset folder') as tmp:
        (tmp / 'annotations').mkdir()
        for split in SPLITS:
            (tmp / split).mkdir()
            coco = build_split(spec, split, tmp / split)
            # compact JSON, as COCO's own files (and byte-identical to datasets generated before)
            write_text_atomic(json.dumps(coco), annotation_path(tmp, split), what='annotation file')
    return root


def ensure(root: str | os.PathLike, spec: MiniCocoSpec, overwrite: bool = False) -> bool:
    """Make sure ``root`` holds the dataset of ``spec``; return True if it had to be generated.

    A dataset of ``spec`` is reused. A dataset generated earlier with another spec (other sizes, classes, seed) is
    the user's data: it is replaced only with ``overwrite``, FileExistsError naming both specs otherwise. A folder
    that is not a generated dataset is never touched (FileExistsError).
    """
    root = Path(root)
    existing = read_spec(root) if root.exists() else None
    if existing == spec:
        return False
    if root.exists() and existing is None:
        raise FileExistsError(f'{root} exists but is not a complete dataset made by this generator; move it away '
                              'or choose another --data-root')
    if existing is not None and not overwrite:
        wanted = spec.to_dict()
        shown = ', '.join(f'{k}={v!r} (this job needs {wanted.get(k)!r})' for k, v in existing.to_dict().items()
                          if wanted.get(k) != v)
        raise FileExistsError(f'--data-root {str(root)!r} holds a generated dataset of another spec: {shown}; pass '
                              '--overwrite to replace it with the one this job needs, or choose another --data-root')
    generate(root, spec, overwrite=True)
    return True


def class_palette(classes: Sequence[str]) -> list[tuple[int, int, int]]:
    """The base colour of each class, for mmdet's ``metainfo['palette']``."""
    return [SHAPE_CLASSES[c].color for c in classes]
