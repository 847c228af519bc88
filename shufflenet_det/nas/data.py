"""A held-out split of a COCO training set for the architecture search.

The search scores candidates on images the supernet was not trained on, and never on the validation set the final
figures are reported on: DetNAS (Chen et al., arXiv 1903.10979) likewise searches on a part of COCO kept out of
supernet training. :func:`split_coco_images` picks ``num_holdout`` images (by image id, seeded) out of a COCO instances
dict; each annotation follows its image; categories and every other top-level field are copied. Both files are
written together and atomically (:func:`write_coco_split`).
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..utils.io import atomic_outputs, same_file

#: Suffixes of the two files written next to the input by default.
TRAIN_SUFFIX, HOLDOUT_SUFFIX = '_nas-train', '_nas-val'


def default_split_paths(ann_file: str | Path) -> tuple[Path, Path]:
    """``<dir>/<stem>_nas-train.json`` and ``<dir>/<stem>_nas-val.json`` beside ``ann_file``."""
    p = Path(ann_file)
    return p.with_name(f'{p.stem}{TRAIN_SUFFIX}.json'), p.with_name(f'{p.stem}{HOLDOUT_SUFFIX}.json')


def _check_ids(entries: Any, section: str, field: str, source: str) -> None:
    """ValueError naming ``source``, the entry and ``field`` unless every entry of ``section`` has an integer
    ``field`` (COCO's image ``id`` / annotation ``image_id``)."""
    if not isinstance(entries, list):
        raise ValueError(f'{source}: "{section}" must be a list, got {type(entries).__name__}')
    for i, entry in enumerate(entries):
        value = entry.get(field) if isinstance(entry, dict) else None
        if not isinstance(value, int) or isinstance(value, bool):
            problem = f'has no "{field}" field' if not isinstance(entry, dict) or field not in entry \
                else f'has "{field}": {value!r}'
            raise ValueError(f'{source}: {section}[{i}] {problem}; every COCO {section[:-1]} needs an integer '
                             f'"{field}"')


def split_coco_images(coco: dict[str, Any], num_holdout: int, seed: int = 0,
                      source: str = 'annotation file') -> tuple[dict[str, Any], dict[str, Any]]:
    """``(train, holdout)`` COCO dicts: ``num_holdout`` images drawn uniformly without replacement (numpy generator
    seeded with ``seed``, over the image ids in increasing order) form ``holdout``, the rest ``train``.

    ValueError naming ``num_holdout`` / ``seed`` when they do not fit the file.
    """
    images = coco.get('images')
    if not isinstance(images, list) or not images:
        raise ValueError(f'{source} lists no images: nothing to split')
    if not isinstance(num_holdout, int) or isinstance(num_holdout, bool) or not 1 <= num_holdout < len(images):
        raise ValueError(f'num_holdout (--num-val) {num_holdout!r} must be an int in [1, {len(images) - 1}] ({source} '
                         f'has {len(images)} images, and both parts need at least one)')
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f'seed (--seed) {seed!r} must be a non-negative int')
    _check_ids(images, 'images', 'id', source)
    _check_ids(coco.get('annotations', []), 'annotations', 'image_id', source)
    ids = sorted(int(im['id']) for im in images)
    if len(set(ids)) != len(ids):
        raise ValueError(f'{source} lists duplicate image ids')
    held = {int(i) for i in np.random.default_rng(seed).choice(ids, size=num_holdout, replace=False)}

    def part(keep: bool, name: str) -> dict[str, Any]:
        out = {k: copy.deepcopy(v) for k, v in coco.items() if k not in ('images', 'annotations')}
        out['images'] = [im for im in images if (int(im['id']) in held) != keep]
        out['annotations'] = [a for a in coco.get('annotations', []) if (int(a['image_id']) in held) != keep]
        info = dict(out.get('info') or {})
        info['nas_split'] = dict(part=name, num_holdout=num_holdout, seed=seed, source_images=len(images))
        out['info'] = info
        return out

    return part(True, 'train'), part(False, 'holdout')


def write_coco_split(ann_file: str | Path, num_holdout: int, seed: int = 0, out_train: Optional[str | Path] = None,
                     out_holdout: Optional[str | Path] = None, overwrite: bool = False) -> tuple[Path, Path, bool]:
    """Split ``ann_file`` (:func:`split_coco_images`) and write both parts together, atomically.

    Returns ``(train path, holdout path, written)``; ``written`` is False when both files already hold exactly this
    split. Existing files with other content are replaced only with ``overwrite``; an output equal to the input is
    refused (ValueError / FileExistsError naming the path).
    """
    from ..datasets.layout import check_annotation_file

    ann_file = Path(ann_file)
    if ann_file.is_dir():
        raise ValueError(f'annotation file {str(ann_file)!r} is a folder; give the COCO instances .json file')
    if not ann_file.is_file():
        raise FileNotFoundError(f'annotation file {str(ann_file)!r} does not exist')
    default_train, default_holdout = default_split_paths(ann_file)
    outs = [Path(out_train) if out_train else default_train, Path(out_holdout) if out_holdout else default_holdout]
    if same_file(outs[0], outs[1]):
        raise ValueError(f'the train and held-out outputs are the same file {str(outs[0])!r}')
    for out in outs:
        if same_file(out, ann_file):
            raise ValueError(f'output {str(out)!r} is the input annotation file: refusing to overwrite it')
        if out.is_dir():
            raise ValueError(f'output {str(out)!r} is a folder, not a file')
    coco = check_annotation_file(str(ann_file), 'the annotation file to split')
    if coco is None:
        raise ValueError(f'annotation file {str(ann_file)!r} must be a COCO .json file of at most 64 MiB to split here '
                         '(bigger files: split them with pycocotools)')
    parts = split_coco_images(coco, num_holdout, seed, source=f'annotation file {str(ann_file)!r}')
    texts = [json.dumps(p) for p in parts]
    existing = [out.read_text(encoding='utf-8') if out.is_file() else None for out in outs]
    if existing == texts:
        return outs[0], outs[1], False
    clash = [str(out) for out, old in zip(outs, existing) if old is not None]
    if clash and not overwrite:
        raise FileExistsError(f'{clash} already exist with other content; pass --overwrite to replace them')
    with atomic_outputs(outs, 'split annotation file') as tmps:
        for tmp, text in zip(tmps, texts):
            tmp.write_text(text, encoding='utf-8')
    return outs[0], outs[1], True
