"""Multiply-adds of a path, counted by the project's counter (:func:`shufflenet_det.analysis.model_complexity`).

A supernet's forward runs only its active path, so counting the supernet with a path set counts exactly the
standalone DetNAS subnet of that path (tested). What is counted (``mode``):

* ``'classifier'`` (default): the backbone with the ImageNet head (global pool + 1000-way linear) at 224x224, how the
  DetNAS and SPOS papers state a backbone's budget (the published COCO-FPN-300M counts 321.2M this way);
* ``'backbone'``: the backbone with its configured ``out_indices`` at ``input_shape``;
* ``'detector'``: the whole detector (backbone, neck, head; no post-processing) at ``input_shape``.
"""
from __future__ import annotations

import copy
from typing import Any, Mapping, Sequence

from torch import nn

from ..analysis import ImageClassifier, last_output_backbone, model_complexity
from ..models.backbones.detnas_supernet import DetNASSupernet

FLOPS_MODES: tuple[str, ...] = ('classifier', 'backbone', 'detector')


def _supernets(model: nn.Module) -> list[DetNASSupernet]:
    return [m for m in model.modules() if isinstance(m, DetNASSupernet)]


class PathFlops:
    """``path -> multiply-adds`` for the supernet detector described by ``model_cfg`` (see module docstring).

    Args:
        model_cfg: the detector config (``model``) whose backbone is a ``DetNASSupernet``.
        mode: one of :data:`FLOPS_MODES`.
        input_shape: the input size counted (``224``, ``(H, W)`` ...); the classifier mode's default is 224.
    """

    def __init__(self, model_cfg: Mapping[str, Any], mode: str = 'classifier',
                 input_shape: int | Sequence[int] = 224) -> None:
        from ..utils.build import build_model

        if mode not in FLOPS_MODES:
            raise ValueError(f'flops_mode={mode!r} is not supported; allowed values: {list(FLOPS_MODES)}')
        backbone_cfg = dict(copy.deepcopy(dict(model_cfg['backbone'])), init_cfg=None)
        backbone_cfg['norm_cfg'] = dict(type='BN')  # the count does not depend on the norm; SyncBN needs no group
        self.mode = mode
        self.input_shape = input_shape
        if mode == 'classifier':
            backbone = last_output_backbone(backbone_cfg)
            self.model: nn.Module = ImageClassifier(backbone, backbone.out_channels[-1], 1000)
        elif mode == 'backbone':
            self.model = build_model(backbone_cfg)
        else:
            detector_cfg = copy.deepcopy(dict(model_cfg))
            detector_cfg['backbone'] = backbone_cfg
            self.model = build_model(detector_cfg, revert_sync_bn=True)
        self.model.eval()
        self.supernets = _supernets(self.model)
        if not self.supernets:
            raise ValueError(f"model.backbone (type={backbone_cfg.get('type')!r}) is not a DetNASSupernet: nothing to "
                             'search')

    def __call__(self, path: Sequence[int]) -> int:
        for supernet in self.supernets:
            supernet.set_path(path)
        return int(model_complexity(self.model, self.input_shape)['flops'])
