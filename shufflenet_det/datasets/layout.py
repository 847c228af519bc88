"""Check that the data a config points at is there and readable, before anything expensive is built.

mmdet only opens the annotation files when the dataloaders are built, i.e. after the model (and for COCO after
minutes of start-up); a missing folder then surfaces as a bare ``FileNotFoundError`` and a truncated JSON file as a
``JSONDecodeError`` deep inside pycocotools. :func:`check_config_data` walks every dataset of a config (dataset
wrappers included) and the evaluators' ``ann_file`` and raises :class:`DatasetCheckError` naming the file, what is
wrong with it, the layout the config expects and how to get data.
"""
from __future__ import annotations

import json
import os
from typing import Any, Iterator, Mapping, Sequence

#: Files up to this size are parsed completely; bigger ones (COCO train2017: 448 MB) get a cheap structural check
#: of their first and last bytes, which catches empty and truncated files without parsing them twice.
FULL_PARSE_LIMIT = 64 * 1024 * 1024

MINI_COCO_HINT = ('or train on the synthetic mini dataset instead:\n'
                  '  python tools/misc/make_mini_coco.py\n'
                  '  python tools/train.py configs/mini/retinanet_shufflenetv2-1x_fpn_mini-coco.py')

PHASES = {
    'train': ('train_dataloader', None),
    'val': ('val_dataloader', 'val_evaluator'),
    'test': ('test_dataloader', 'test_evaluator'),
}


class DatasetCheckError(ValueError):
    """The data a config needs is missing, empty or unreadable (the message says which file and why)."""


def _is_remote(path: str) -> bool:
    return '://' in path


def _join(root: str | None, path: str) -> str:
    if root and not os.path.isabs(path) and not _is_remote(path):
        return os.path.join(root, path)
    return path


def iter_datasets(dataset_cfg: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """The leaf dataset configs of ``dataset_cfg``, looking through wrappers (RepeatDataset, ConcatDataset, ...)."""
    if 'dataset' in dataset_cfg and isinstance(dataset_cfg['dataset'], Mapping):
        yield from iter_datasets(dataset_cfg['dataset'])
    elif 'datasets' in dataset_cfg and isinstance(dataset_cfg['datasets'], Sequence):
        for sub in dataset_cfg['datasets']:
            yield from iter_datasets(sub)
    else:
        yield dataset_cfg


def dataset_paths(dataset_cfg: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """The annotation file and image folder of a leaf dataset config, resolved against ``data_root`` the way
    mmengine's ``BaseDataset`` does."""
    root = dataset_cfg.get('data_root') or None
    ann = dataset_cfg.get('ann_file') or None
    prefix = dataset_cfg.get('data_prefix') or {}
    img = prefix.get('img', prefix.get('img_path')) if isinstance(prefix, Mapping) else None
    return (_join(root, ann) if ann else None), (_join(root, img) if img else None)


def _phase_entries(cfg: Mapping[str, Any], phases: Sequence[str]) -> list[tuple[str, str | None, str | None]]:
    """``(where, ann_file, image_dir)`` for every dataset and evaluator of the requested phases."""
    entries: list[tuple[str, str | None, str | None]] = []
    for phase in phases:
        if phase not in PHASES:
            raise ValueError(f'phase={phase!r} must be one of {list(PHASES)}')
        loader_key, evaluator_key = PHASES[phase]
        loader = cfg.get(loader_key)
        if not loader or 'dataset' not in loader:
            continue
        for ds in iter_datasets(loader['dataset']):
            ann, img = dataset_paths(ds)
            entries.append((f'{loader_key}.dataset', ann, img))
        evaluators = cfg.get(evaluator_key) if evaluator_key else None
        if isinstance(evaluators, Mapping):
            evaluators = [evaluators]
        for ev in evaluators or []:
            if isinstance(ev, Mapping) and ev.get('ann_file'):
                entries.append((evaluator_key, ev['ann_file'], None))
    return entries


def expected_layout(cfg: Mapping[str, Any], phases: Sequence[str] = ('train', 'val', 'test')) -> list[str]:
    """Every annotation file and image folder the config reads, without duplicates, in config order."""
    seen: list[str] = []
    for _where, ann, img in _phase_entries(cfg, phases):
        for path in (ann, (img.rstrip('/') + '/') if img else None):
            if path and path not in seen:
                seen.append(path)
    return seen


def _missing_message(what: str, path: str, where: str, cfg: Mapping[str, Any]) -> str:
    layout = '\n'.join(f'  {p}' for p in expected_layout(cfg))
    return (f'{what} {path!r} (from {where}) does not exist.\n'
            f'This config expects this data layout:\n{layout}\n'
            'Download COCO 2017 from https://cocodataset.org and place (or symlink) it there, point the config at '
            'your copy with --cfg-options (e.g. train_dataloader.dataset.data_root=/path/to/coco/), '
            f'{MINI_COCO_HINT}')


def check_annotation_file(path: str, where: str = 'ann_file') -> None:
    """Raise DatasetCheckError if ``path`` is empty, not JSON, truncated, or not a COCO instances file."""
    size = os.path.getsize(path)
    if size == 0:
        raise DatasetCheckError(f'annotation file {path!r} (from {where}) is empty (0 bytes); re-download or '
                                'regenerate it')
    if not path.endswith('.json'):
        return
    if size > FULL_PARSE_LIMIT:
        with open(path, 'rb') as f:
            head = f.read(4096).lstrip()
            f.seek(max(0, size - 4096))
            tail = f.read().rstrip()
        if not head.startswith(b'{') or not tail.endswith(b'}'):
            raise DatasetCheckError(f'annotation file {path!r} (from {where}) is corrupt: a COCO JSON file starts '
                                    "with '{' and ends with '}' (truncated download?); re-download it")
        return
    try:
        with open(path, encoding='utf-8') as f:
            data = json.load(f)
    except UnicodeDecodeError as exc:
        raise DatasetCheckError(f'annotation file {path!r} (from {where}) is not UTF-8 text: {exc}') from None
    except json.JSONDecodeError as exc:
        raise DatasetCheckError(f'annotation file {path!r} (from {where}) is not valid JSON (line {exc.lineno}, '
                                f'column {exc.colno}: {exc.msg}); it is corrupt or truncated, re-download or '
                                'regenerate it') from None
    if not isinstance(data, dict):
        raise DatasetCheckError(f'annotation file {path!r} (from {where}) must hold a JSON object with "images", '
                                f'"annotations" and "categories", got a {type(data).__name__}')
    missing = [k for k in ('images', 'annotations', 'categories') if not isinstance(data.get(k), list)]
    if missing:
        raise DatasetCheckError(f'annotation file {path!r} (from {where}) is not a COCO instances file: '
                                f'missing or non-list keys {missing}')
    if not data['images']:
        raise DatasetCheckError(f'annotation file {path!r} (from {where}) lists no images')
    if not data['categories']:
        raise DatasetCheckError(f'annotation file {path!r} (from {where}) lists no categories')


def check_config_data(cfg: Mapping[str, Any], phases: Sequence[str] = ('train', 'val')) -> None:
    """Check every dataset and evaluator annotation file the given phases of ``cfg`` read.

    Remote paths (``s3://`` ...) and datasets without ``ann_file`` are left to mmdet.
    """
    for where, ann, img in _phase_entries(cfg, phases):
        if ann and not _is_remote(ann):
            if not os.path.isfile(ann):
                raise DatasetCheckError(_missing_message('annotation file', ann, where, cfg))
            check_annotation_file(ann, where)
        if img and not _is_remote(img):
            if not os.path.isdir(img):
                raise DatasetCheckError(_missing_message('image folder', img, where, cfg))
            with os.scandir(img) as it:
                if next(it, None) is None:
                    raise DatasetCheckError(f'image folder {img!r} (from {where}) is empty')
