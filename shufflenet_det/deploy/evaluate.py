"""COCO bbox mAP of an exported ONNX detector, next to the PyTorch model's on the very same inputs.

Each validation image goes through mmdet's test-time resize (``mmcv.imrescale``, keep ratio) and the detector's
normalisation, then through ONNX Runtime (the export of :func:`onnx_export.export_detector_onnx`: NMS in the graph)
and, with a reference model, through mmdet's ``predict``; boxes are scaled back to the original image and both result
sets are scored by pycocotools. Equal mAPs show that deployment lost no accuracy.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from torch import nn


def coco_eval(ann_file: str | os.PathLike, results: list[dict[str, Any]]) -> dict[str, float]:
    """pycocotools bbox evaluation; the 12 standard numbers (mAP, mAP_50, ...), 0 when there is no result."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    names = ['bbox_mAP', 'bbox_mAP_50', 'bbox_mAP_75', 'bbox_mAP_s', 'bbox_mAP_m', 'bbox_mAP_l']
    if not results:
        return dict.fromkeys(names, 0.0)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ann_file))
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, 'bbox')
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {n: float(v) for n, v in zip(names, ev.stats[:6])}


def _to_coco(image_id: int, dets: dict[str, np.ndarray], scale: float, cat_ids: Sequence[int]) -> list[dict]:
    out = []
    for box, score, label in zip(np.asarray(dets['boxes']) / scale, dets['scores'], dets['labels']):
        x1, y1, x2, y2 = (float(v) for v in box)
        out.append(dict(image_id=int(image_id), category_id=int(cat_ids[int(label)]),
                        bbox=[x1, y1, x2 - x1, y2 - y1], score=float(score)))
    return out


def evaluate_onnx(onnx_path: str | os.PathLike, ann_file: str | os.PathLike, img_dir: str | os.PathLike,
                  classes: Sequence[str], size: Sequence[int], preprocess: dict[str, Any],
                  reference: nn.Module | None = None, limit: int | None = None,
                  threads: int = 0, session: Any = None) -> dict[str, Any]:
    """mAP of the ONNX detector (and of ``reference`` in PyTorch) on a COCO-format set.

    ``size`` is the (H, W) the images are resized into (keep ratio) and padded to; ``preprocess`` holds ``mean``,
    ``std`` and ``bgr_to_rgb`` (see :func:`shufflenet_det.utils.predict.preprocess_meta`); ``classes`` maps labels
    to the annotation file's category ids by name, as mmdet's CocoDataset does. ``limit`` (>= 1) evaluates the
    first images only; None evaluates all. ``session`` is an open ONNX Runtime session of ``onnx_path``
    (:func:`open_onnx`), made here when None.
    """
    from ..utils.predict import predict_detections
    from .export_common import unpad_detections
    from .images import prepare_image, read_image
    if limit is not None and limit < 1:
        raise ValueError(f'limit must be >= 1 (or None for every image), got {limit}')
    try:
        ann = json.loads(Path(ann_file).read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f'annotation file {str(ann_file)!r} cannot be read: {exc}') from exc
    by_name = {c['name']: c['id'] for c in ann['categories']}
    missing = [c for c in classes if c not in by_name]
    if missing:
        raise ValueError(f'classes {missing} are not categories of {str(ann_file)!r}')
    cat_ids = [by_name[c] for c in classes]
    sess = session if session is not None else open_onnx(onnx_path, threads=threads)
    input_name = sess.get_inputs()[0].name
    images = ann['images'][:limit] if limit is not None else ann['images']
    onnx_results: list[dict] = []
    torch_results: list[dict] = []
    for info in images:
        path = Path(img_dir) / info['file_name']
        x, scale = prepare_image(read_image(path, f'image of {str(ann_file)!r}'), size, preprocess)
        onnx_results += _to_coco(info['id'], unpad_detections(*sess.run(None, {input_name: x.numpy()}))[0],
                                 scale, cat_ids)
        if reference is not None:
            torch_results += _to_coco(info['id'], predict_detections(reference, x)[0], scale, cat_ids)
    subset = dict(ann)
    ids = {im['id'] for im in images}
    subset['images'] = images
    subset['annotations'] = [a for a in ann['annotations'] if a['image_id'] in ids]
    with tempfile.TemporaryDirectory(prefix='shufflenet_det_eval_') as tmpdir:
        gt = Path(tmpdir) / 'gt.json'  # the evaluated images only (with --limit)
        gt.write_text(json.dumps(subset))
        result: dict[str, Any] = dict(num_images=len(images), onnx=coco_eval(gt, onnx_results),
                                      onnx_detections=len(onnx_results))
        if reference is not None:
            result.update(torch=coco_eval(gt, torch_results), torch_detections=len(torch_results))
            result['mAP_diff'] = abs(result['onnx']['bbox_mAP'] - result['torch']['bbox_mAP'])
    return result


def open_onnx(path: str | os.PathLike, threads: int = 0) -> Any:
    """An ONNX Runtime session of ``path``; ValueError naming the file when it is missing, empty or not a model."""
    from .onnx_export import ort_session
    p = Path(path)
    if not p.is_file():
        raise ValueError(f'ONNX model {str(p)!r} does not exist')
    if p.stat().st_size == 0:
        raise ValueError(f'ONNX model {str(p)!r} is empty (0 bytes)')
    try:
        return ort_session(p, threads=threads)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types for corrupt files
        reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise ValueError(f'ONNX model {str(p)!r} cannot be loaded (truncated, corrupt or not ONNX): {reason}') from exc


def dataset_of(cfg: Any) -> tuple[Path, Path, list[str]]:
    """(annotation file, image folder, class names) of a config's validation set; ValueError naming the config and
    what it lacks when it has none (e.g. an mmdeploy deploy config given instead of the detector's)."""
    name = repr(str(getattr(cfg, 'filename', None) or 'the config'))
    if not isinstance(cfg.get('model'), dict) and any(
            k in cfg for k in ('onnx_config', 'backend_config', 'codebase_config')):
        raise ValueError(f'config {name} is an mmdeploy deploy config (onnx_config / codebase_config), not a '
                         'detector config: it has no val_dataloader; give the config the model was trained with')
    loader = cfg.get('val_dataloader')
    ds = loader.get('dataset') if isinstance(loader, dict) else None
    if not isinstance(ds, dict) or not ds.get('ann_file'):
        lacks = ('val_dataloader' if loader is None else 'val_dataloader.dataset' if not isinstance(ds, dict)
                 else 'val_dataloader.dataset.ann_file')
        raise ValueError(f'config {name} has no {lacks}: the validation set (a COCO-format ann_file, its images and '
                         'classes) comes from there; give a detector config with a validation set')
    root = Path(ds.get('data_root', '') or '')
    classes = (ds.get('metainfo') or cfg.get('metainfo') or {}).get('classes')
    if classes is None:
        from mmdet.datasets import CocoDataset
        classes = CocoDataset.METAINFO['classes']
    return root / ds['ann_file'], root / ds.get('data_prefix', {}).get('img', ''), list(classes)


def check_report_classes(report: dict[str, Any], classes: Sequence[str], report_path: str | os.PathLike,
                         config: str | os.PathLike) -> None:
    """ValueError naming both files and the first differing class when the classes of an export (its report) are
    not the config's validation classes, in order: label ``i`` would be scored as another category."""
    exported = report.get('classes')
    if not isinstance(exported, list):  # an older report: the number of classes at least
        exported = None
        n = (report.get('postprocess') or {}).get('num_classes')
        if not isinstance(n, int) or n == len(classes):
            return
    elif list(exported) == list(classes):
        return
    where = f'the export (report {str(report_path)!r})'
    if exported is None:
        raise ValueError(f'{where} has {n} classes, config {str(config)!r} {len(classes)}; evaluate with the '
                         'config the model was exported from')
    i = next((i for i, (a, b) in enumerate(zip(exported, classes)) if a != b), min(len(exported), len(classes)))
    first = (f"class {i} is {exported[i] if i < len(exported) else None!r} in the export and "
             f"{classes[i] if i < len(classes) else None!r} in the config")
    raise ValueError(f'the classes of {where} differ from those of config {str(config)!r} ({len(exported)} vs '
                     f'{len(classes)} classes): {first}; evaluate with the config the model was exported from')
