"""The images a quantization reads: calibration images drawn from a config's dataset and prepared as for the export,
the validation set the float and int8 models are scored on, and the reader that feeds ONNX Runtime's calibration."""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

#: Calibration images run through ONNX Runtime per chunk (the ranges of the chunks are merged).
CALIBRATION_CHUNK = 8


def dataset_split(cfg: Any, split: str) -> tuple[Path, Path]:
    """(annotation file, image folder) of the config's ``train`` / ``val`` / ``test`` dataloader dataset."""
    if split not in ('train', 'val', 'test'):
        raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
    loader = cfg.get(f'{split}_dataloader')
    if loader is None or loader.get('dataset') is None:
        raise ValueError(f'the config has no {split}_dataloader.dataset')
    ds = loader.dataset
    while ds.get('dataset') is not None:  # RepeatDataset, ClassBalancedDataset, ... wrap the COCO dataset
        ds = ds.dataset
    if ds.get('ann_file') is None:
        raise ValueError(f'{split}_dataloader.dataset has no ann_file (a COCO-format dataset is needed)')
    root = Path(ds.get('data_root', '') or '')
    return root / ds.ann_file, root / (ds.get('data_prefix') or {}).get('img', '')


def sample_images(ann_file: str | os.PathLike, img_dir: str | os.PathLike, num: int, seed: int = 0) -> list[Path]:
    """``num`` image files of a COCO annotation file, drawn without replacement (deterministic in ``seed``).

    ValueError naming the file when it cannot be read or holds fewer than ``num`` images.
    """
    if num < 1:
        raise ValueError(f'the number of calibration images must be >= 1, got {num}')
    try:
        images = json.loads(Path(ann_file).read_text())['images']
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f'annotation file {str(ann_file)!r} cannot be read as COCO json: {exc}') from exc
    if len(images) < num:
        raise ValueError(f'{str(ann_file)!r} has {len(images)} images, fewer than the {num} calibration images '
                         'asked for (--num-calib, times the batch of a static export)')
    images = sorted(images, key=lambda im: im['id'])
    pick = np.random.default_rng(seed).choice(len(images), size=num, replace=False)
    return [Path(img_dir) / images[i]['file_name'] for i in sorted(pick)]


def calibration_tensors(paths: Sequence[str | os.PathLike], size: Sequence[int], preprocess: dict[str, Any],
                        batch: int = 1) -> list[np.ndarray]:
    """Input tensors ``(batch, 3, H, W)`` of images prepared as for the export (:func:`..images.prepare_image`).

    Consecutive images form a batch; a last incomplete batch is dropped (at least one full batch is needed).
    """
    from ..images import prepare_image, read_image
    singles = [prepare_image(read_image(p, 'calibration image'), size, preprocess)[0].numpy() for p in paths]
    if len(singles) < batch:
        raise ValueError(f'{len(singles)} images cannot fill one batch of {batch}')
    return [np.concatenate(singles[i:i + batch]) for i in range(0, len(singles) - batch + 1, batch)]


@dataclasses.dataclass
class ValidationSet:
    """The COCO-format set the float and int8 models are scored on (``limit``: its first images only)."""

    ann_file: Path
    img_dir: Path
    classes: list[str]
    limit: int | None = None

    def paths(self) -> list[Path]:
        """The image files evaluated."""
        images = json.loads(Path(self.ann_file).read_text())['images']
        images = images[:self.limit] if self.limit is not None else images
        return [Path(self.img_dir) / im['file_name'] for im in images]


def tensor_reader(input_name: str, tensors: Sequence[np.ndarray]) -> Any:
    """A ``CalibrationDataReader`` over ``tensors`` that supports ONNX Runtime's chunked calibration."""
    from onnxruntime.quantization import CalibrationDataReader

    class TensorReader(CalibrationDataReader):
        def __init__(self) -> None:
            self.set_range(0, len(tensors))

        def __len__(self) -> int:
            return len(tensors)

        def set_range(self, start_index: int, end_index: int) -> None:
            self._it = iter(tensors[start_index:end_index])

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self._it, None)
            return None if x is None else {input_name: x}
    return TensorReader()


def calibration_chunk(n: int) -> int:
    """The largest chunk size <= CALIBRATION_CHUNK that divides ``n`` (ONNX Runtime requires equal chunks)."""
    return max(d for d in range(1, min(n, CALIBRATION_CHUNK) + 1) if n % d == 0)
