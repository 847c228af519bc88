"""Running mmdet models on plain tensors: data samples, predictions, tensor-mode forwards, preprocessing facts.

Exporters, the benchmark, the FLOPs counter and the mini job all call a detector on an already normalised batch
``(B, 3, H, W)``; these helpers give every caller the same meta data (no resize: scale factor 1) and the same
description of how images are normalised.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from mmdet.models.detectors import BaseDetector

#: ImageNet statistics (RGB, 0-255): the normalisation of a bare backbone, which has no data preprocessor.
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


def make_data_samples(batch: int, height: int, width: int) -> list[Any]:
    """``batch`` mmdet ``DetDataSample`` s describing an unresized, unpadded ``height x width`` input."""
    from mmdet.structures import DetDataSample
    samples = []
    for _ in range(int(batch)):
        sample = DetDataSample()
        sample.set_metainfo(dict(img_shape=(height, width), ori_shape=(height, width), pad_shape=(height, width),
                                 batch_input_shape=(height, width), scale_factor=(1.0, 1.0)))
        samples.append(sample)
    return samples


def predict_detections(detector: BaseDetector, x: torch.Tensor) -> list[dict[str, np.ndarray]]:
    """mmdet's own ``predict`` (``rescale=False``) on a normalised batch: boxes, scores, labels per image."""
    samples = make_data_samples(x.shape[0], int(x.shape[2]), int(x.shape[3]))
    with torch.no_grad():
        results = detector.predict(x, samples, rescale=False)
    return [dict(boxes=r.pred_instances.bboxes.cpu().numpy(), scores=r.pred_instances.scores.cpu().numpy(),
                 labels=r.pred_instances.labels.cpu().numpy()) for r in results]


def predict_fn(detector: BaseDetector, x: torch.Tensor) -> Any:
    """A no-argument callable running ``detector.predict`` on ``x`` (samples made once, for timing loops)."""
    samples = make_data_samples(x.shape[0], int(x.shape[2]), int(x.shape[3]))
    return lambda: detector.predict(x, samples, rescale=False)


def flatten_tensors(obj: Any) -> list[torch.Tensor]:
    """Every tensor of nested lists / tuples / dicts, in order."""
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, dict):
        obj = list(obj.values())
    if isinstance(obj, (list, tuple)):
        return [t for item in obj for t in flatten_tensors(item)]
    return []


class TensorOutputs(nn.Module):
    """``module(x, **kwargs)`` with its (nested) outputs flattened into a tuple of tensors (what tracing needs)."""

    def __init__(self, module: nn.Module, **kwargs: Any) -> None:
        super().__init__()
        self.module = module
        self.kwargs = kwargs

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:  # noqa: D102
        return tuple(flatten_tensors(self.module(x, **self.kwargs)))


def is_detector(model: nn.Module) -> bool:
    """True for mmdet detectors (``BaseDetector`` subclasses)."""
    from mmdet.models.detectors import BaseDetector
    return isinstance(model, BaseDetector)


def tensor_mode(model: nn.Module, shape: Sequence[int]) -> nn.Module:
    """A module mapping an input of ``shape`` (N, C, H, W) to a tuple of tensors.

    An mmdet detector runs in ``mode='tensor'`` (backbone + neck + head forward, no post-processing) with data
    samples carrying the input shape; any other module is called on the tensor.
    """
    if not is_detector(model):
        return TensorOutputs(model)
    n, _, h, w = (int(s) for s in shape)
    return TensorOutputs(model, data_samples=make_data_samples(n, h, w), mode='tensor')


def class_names(detector: nn.Module) -> list[str] | None:
    """Class names from the detector's dataset meta or its config (``metainfo``), if any."""
    meta = getattr(detector, 'dataset_meta', None) or {}
    names = meta.get('classes')
    cfg = getattr(detector, 'cfg', None)
    if names is None and cfg is not None:
        for getter in (lambda c: c.metainfo, lambda c: c.val_dataloader.dataset.metainfo):
            try:
                names = getter(cfg)['classes']
                break
            except (AttributeError, KeyError, TypeError):
                continue
    return list(names) if names is not None else None


def preprocess_meta(model: nn.Module | None) -> dict[str, Any]:
    """How raw BGR uint8 images become the model's input: ``mean``, ``std``, ``bgr_to_rgb``, padding.

    From the model's data preprocessor (mmdet's ``DetDataPreprocessor``: no mean/std there means no normalisation);
    a model without one (a bare backbone) gets ImageNet's RGB statistics, the normalisation it was trained with.
    """
    pre = getattr(model, 'data_preprocessor', None) if model is not None else None
    if pre is None or not hasattr(pre, '_channel_conversion'):
        return dict(mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD), bgr_to_rgb=True, pad_size_divisor=1,
                    pad_value=0.0)
    mean, std = getattr(pre, 'mean', None), getattr(pre, 'std', None)
    normalise = bool(getattr(pre, '_enable_normalize', mean is not None))
    return dict(mean=mean.flatten().tolist() if normalise and mean is not None else [0.0, 0.0, 0.0],
                std=std.flatten().tolist() if normalise and std is not None else [1.0, 1.0, 1.0],
                bgr_to_rgb=bool(pre._channel_conversion),
                pad_size_divisor=int(getattr(pre, 'pad_size_divisor', 1)),
                pad_value=float(getattr(pre, 'pad_value', 0)))
