"""Check that the data a config points at is there and readable, before anything expensive is built.

mmdet only opens the annotation files when the dataloaders are built, i.e. after the model (and for COCO after
minutes of start-up); a missing folder then surfaces as a bare ``FileNotFoundError`` and a truncated JSON file as a
``JSONDecodeError`` deep inside pycocotools. :func:`check_config_data` walks every dataset of a config (dataset
wrappers included) and the evaluators' ``ann_file`` and raises :class:`DatasetCheckError` naming the file, what is
wrong with it, the layout the config expects and how to get data.

For a COCO annotation file that is parsed (up to :data:`FULL_PARSE_LIMIT`) the images it lists are checked too
(:func:`check_image_files`): every one must exist in the image folder (one directory listing) and be an image - its
first bytes are read and must carry a known image signature (all images up to :data:`HEADER_CHECK_LIMIT`, an evenly
spaced sample of that many beyond), so a missing picture or an HTML error page saved as ``.jpg`` is reported before
training starts rather than as a decode error in a dataloader worker minutes later.
"""
from __future__ import annotations

import json
import os
from typing import Any, Iterator, Mapping, Sequence

#: Files up to this size are parsed completely; bigger ones (COCO train2017: 448 MB) get a cheap structural check
#: of their first and last bytes, which catches empty and truncated files without parsing them twice.
FULL_PARSE_LIMIT = 64 * 1024 * 1024

#: How many images per annotation file get their first bytes checked (an evenly spaced sample beyond this).
HEADER_CHECK_LIMIT = 20000

#: First bytes of the image formats OpenCV / Pillow read (mmcv decodes images with one of them).
IMAGE_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b'\xff\xd8\xff', 'JPEG'), (b'\x89PNG\r\n\x1a\n', 'PNG'), (b'BM', 'BMP'), (b'GIF87a', 'GIF'),
    (b'GIF89a', 'GIF'), (b'II*\x00', 'TIFF'), (b'MM\x00*', 'TIFF'), (b'\x00\x00\x00\x0cjP  \r\n\x87\n', 'JPEG 2000'),
    (b'\xffO\xffQ', 'JPEG 2000'), (b'v/1\x01', 'OpenEXR'), (b'#?RADIANCE', 'Radiance HDR'), (b'#?RGBE', 'Radiance HDR'),
)

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
        if not evaluator_key:  # the phase has no evaluator (train)
            continue
        evaluators = cfg.get(evaluator_key)
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


def image_format(head: bytes) -> str | None:
    """The image format whose signature ``head`` (a file's first bytes) starts with, or None."""
    for signature, name in IMAGE_SIGNATURES:
        if head.startswith(signature):
            return name
    if head[:4] == b'RIFF' and head[8:12] == b'WEBP':
        return 'WebP'
    if len(head) >= 3 and head[:1] == b'P' and head[1:2] in b'1234567' and head[2:3] in b' \t\r\n':
        return 'PNM'
    return None


def _sample(n: int, limit: int) -> list[int]:
    """All of ``range(n)`` up to ``limit`` items, else ``limit`` evenly spaced indices (first and last included)."""
    if n <= limit:
        return list(range(n))
    return sorted({round(i * (n - 1) / (limit - 1)) for i in range(limit)})


def check_image_files(data: Mapping[str, Any], image_dir: str, ann: str, where: str) -> None:
    """Every image a COCO annotation file lists exists in ``image_dir`` and starts like an image file."""
    names: list[str] = []
    for i, image in enumerate(data.get('images') or []):
        name = image.get('file_name') if isinstance(image, Mapping) else None
        if not isinstance(name, str) or not name:
            ident = image.get('id', f'#{i}') if isinstance(image, Mapping) else f'#{i}'
            raise DatasetCheckError(f'annotation file {ann!r} (from {where}): image {ident} has no "file_name"')
        names.append(name)
    try:
        listed = set(os.listdir(image_dir))
    except OSError as exc:
        raise DatasetCheckError(f'image folder {image_dir!r} (from {where}) cannot be read: '
                                f'{exc.strerror or exc}') from None
    missing = [n for n in names if (n not in listed if os.sep not in n and '/' not in n
                                    else not os.path.isfile(os.path.join(image_dir, n)))]
    if missing:
        raise DatasetCheckError(
            f'annotation file {ann!r} (from {where}) lists {len(missing)} of its {len(names)} images that are not '
            f'in the image folder {image_dir!r}, e.g. {os.path.join(image_dir, missing[0])!r} is missing (first '
            f'missing: {missing[:3]}); the annotations and the images do not belong together or the download is '
            'incomplete')
    for idx in _sample(len(names), HEADER_CHECK_LIMIT):
        path = os.path.join(image_dir, names[idx])
        try:
            with open(path, 'rb') as f:
                head = f.read(16)
        except IsADirectoryError:
            head = None
        except OSError as exc:
            raise DatasetCheckError(f'image {path!r} (listed in {ann!r}) cannot be read: {exc.strerror or exc}') \
                from None
        if head is None or not head or image_format(head) is None:
            what = ('is a folder' if head is None else 'is empty (0 bytes)' if not head
                    else f'is not an image file: it starts with {head!r}')
            raise DatasetCheckError(
                f'image {path!r} (listed in {ann!r}, from {where}) {what}; expected one of '
                f'{sorted({n for _, n in IMAGE_SIGNATURES} | {"WebP", "PNM"})} - replace it with the real image '
                '(an interrupted or failed download?)')


def check_annotation_file(path: str, where: str = 'ann_file') -> dict | None:
    """Raise DatasetCheckError if ``path`` is empty, not JSON, truncated, or not a COCO instances file.

    Returns the parsed COCO dict, or None where the file was not parsed (not ``.json``, or above
    :data:`FULL_PARSE_LIMIT`: then only its first and last bytes are checked)."""
    size = os.path.getsize(path)
    if size == 0:
        raise DatasetCheckError(f'annotation file {path!r} (from {where}) is empty (0 bytes); re-download or '
                                'regenerate it')
    if not path.endswith('.json'):
        return None
    if size > FULL_PARSE_LIMIT:
        with open(path, 'rb') as f:
            head = f.read(4096).lstrip()
            f.seek(max(0, size - 4096))
            tail = f.read().rstrip()
        if not head.startswith(b'{') or not tail.endswith(b'}'):
            raise DatasetCheckError(f'annotation file {path!r} (from {where}) is corrupt: a COCO JSON file starts '
                                    "with '{' and ends with '}' (truncated download?); re-download it")
        return None
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
    return data


def check_config_data(cfg: Mapping[str, Any], phases: Sequence[str] = ('train', 'val')) -> None:
    """Check every dataset and evaluator annotation file the given phases of ``cfg`` read.

    Remote paths (``s3://`` ...) and datasets without ``ann_file`` are left to mmdet. The images of a parsed COCO
    annotation file are checked by :func:`check_image_files`.
    """
    for where, ann, img in _phase_entries(cfg, phases):
        data = None
        if ann and not _is_remote(ann):
            if not os.path.isfile(ann):
                raise DatasetCheckError(_missing_message('annotation file', ann, where, cfg))
            data = check_annotation_file(ann, where)
        if img and not _is_remote(img):
            if not os.path.isdir(img):
                raise DatasetCheckError(_missing_message('image folder', img, where, cfg))
            with os.scandir(img) as it:
                if next(it, None) is None:
                    raise DatasetCheckError(f'image folder {img!r} (from {where}) is empty')
            if data is not None:
                check_image_files(data, img, ann or '', where)
