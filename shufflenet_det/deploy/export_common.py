"""The pieces of the export skeleton (:mod:`.exporter`): errors, input checks, tuple outputs, check inputs, report
fields.

* :class:`ExportError` - an export or its parity check failed (nothing is written);
* :func:`check_input_shape` - ``(batch, 3, height, width)`` with positive sizes;
* :class:`TupleOutputs` - a module whose outputs are always a tuple (stable output names for one-output backbones);
* :func:`random_check_inputs` / :func:`with_second_size` - check inputs, with a second size for dynamic exports;
* :func:`prepare_detector` - the reference and the deployable copy of a detector (BN folded where it can be);
* :func:`backbone_meta` / :func:`detector_meta` - the model description stored in every export report;
* :func:`require_parity` - the parity line of an export, and ExportError when the check failed;
* :func:`unpad_detections` - padded ``(num_dets, boxes, scores, labels)`` outputs -> one dict per image.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ..utils.build import prepare_for_export
from ..utils.cli import Interrupted, ReportedError
from ..utils.predict import class_names
from .parity import format_report


class ExportError(ReportedError):
    """Raised when an export fails or its parity check does not pass (no file is written)."""


def reraise_interrupt(exc: BaseException) -> None:
    """Raise the :class:`~shufflenet_det.utils.cli.Interrupted` hidden in ``exc``, if any; return otherwise.

    SIGTERM / SIGINT raise ``Interrupted`` wherever Python code runs; inside ``torch.jit.trace`` /
    ``torch.onnx.export`` that is a Python callback of C++ code, which turns it into a RuntimeError whose message
    (a TorchScript stack) carries the original text. An export stopped by a signal must end as an interruption
    (exit 143 / 130), not as a failed export.
    """
    import re
    import signal

    seen: BaseException | None = exc
    for _ in range(16):
        if seen is None:
            break
        if isinstance(seen, Interrupted):
            raise seen
        seen = seen.__cause__ or seen.__context__
    match = re.search(r'interrupted by (SIG[A-Z]+)', str(exc))
    if match and match.group(1) in signal.Signals.__members__:
        raise Interrupted(signal.Signals[match.group(1)]) from exc


def check_input_shape(shape: Sequence[int]) -> tuple[int, int, int, int]:
    """ValueError unless ``shape`` is (batch, 3, height, width) with positive sizes."""
    dims = tuple(int(s) for s in shape)
    if len(dims) != 4 or dims[1] != 3 or min(dims) <= 0:
        raise ValueError(f'input shape must be (batch, 3, height, width) with positive sizes, got {dims}')
    return dims[0], dims[1], dims[2], dims[3]


class TupleOutputs(nn.Module):
    """``module(x)`` as a tuple of tensors, even when the module returns one tensor (stable output names)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The wrapped module's outputs, as a tuple."""
        out = self.module(x)
        return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def random_check_inputs(shape: Sequence[int], dynamic: bool, seed: int,
                        second_batch: int | None = None) -> list[torch.Tensor]:
    """Random check inputs of ``shape`` (N, 3, H, W) and, when ``dynamic``, a second one 32 px taller, 64 px wider.

    The second input has ``second_batch`` images (default: one more than ``shape``, so a dynamic batch axis is
    exercised too). Deterministic in ``seed``.
    """
    gen = torch.Generator().manual_seed(seed)
    shapes = [tuple(shape)]
    if dynamic:
        n = shape[0] + 1 if second_batch is None else second_batch
        shapes.append((n, 3, shape[2] + 32, shape[3] + 64))
    return [torch.randn(s, generator=gen) for s in shapes]


def with_second_size(images: Sequence[torch.Tensor], dynamic: bool) -> list[torch.Tensor]:
    """For a dynamic export whose check images share one size, add a crop of the first at another size."""
    images = list(images)
    if dynamic and len({tuple(im.shape) for im in images}) == 1:
        h, w = images[0].shape[2:]
        images.append(images[0][:, :, :max(32, (h * 3 // 4) // 32 * 32), :max(32, (w * 5 // 8) // 32 * 32)].clone())
    return images


def prepare_detector(detector: nn.Module, fold_bn: bool) -> tuple[nn.Module, nn.Module, bool]:
    """``(reference, deployable, folded)`` copies of a detector in eval mode (:func:`utils.build.prepare_for_export`).

    BN is folded in every part that can fold it (``switch_to_deploy``); a detector with no such part (e.g. mmdet's
    ResNet backbones) is exported as it is and ``folded`` is False.
    """
    foldable = any(hasattr(m, 'switch_to_deploy') for m in detector.modules())
    reference, deployable = prepare_for_export(detector, fold_bn=fold_bn and foldable)
    return reference, deployable, bool(fold_bn and foldable)


def backbone_meta(backbone: nn.Module, fold_bn: bool, **extra: Any) -> dict[str, Any]:
    """The description of an exported backbone stored in its report (``extra`` keys after the common ones)."""
    return dict(what='backbone', backbone=type(backbone).__name__, **extra, bn_folded=fold_bn,
                out_channels=list(getattr(backbone, 'out_channels', [])) or None,
                out_strides=list(getattr(backbone, 'out_strides', [])) or None)


def detector_meta(detector: nn.Module, folded: bool, with_nms: bool, postprocess: dict[str, Any],
                  **extra: Any) -> dict[str, Any]:
    """The description of an exported detector stored in its report: classes and post-processing included."""
    return dict(what='detector', detector=type(detector).__name__, backbone=type(detector.backbone).__name__,
                **extra, bn_folded=folded, with_nms=with_nms, classes=class_names(detector), postprocess=postprocess)


def require_parity(output: str | os.PathLike, parity: dict[str, Any], verbose: bool = True) -> None:
    """Print the parity line of an export (``verbose``); ExportError when the check failed (nothing is written)."""
    if verbose:
        print(f'[export] {Path(output).name}: {format_report(parity)}')
    if not parity['passed']:
        raise ExportError(f'parity check failed for {str(output)!r}; nothing written: {format_report(parity)}')


def unpad_detections(num_dets: np.ndarray, boxes: np.ndarray, scores: np.ndarray,
                     labels: np.ndarray) -> list[dict[str, np.ndarray]]:
    """Split the padded (num_dets, boxes, scores, labels) outputs into one dict per image."""
    return [dict(boxes=boxes[i, :n], scores=scores[i, :n], labels=labels[i, :n])
            for i, n in enumerate(np.asarray(num_dets).reshape(-1).astype(int))]
