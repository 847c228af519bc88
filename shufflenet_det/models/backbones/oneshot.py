"""OneShot: the subnet found by Single Path One-Shot NAS (Guo et al., "Single Path One-Shot Neural Architecture
Search with Uniform Sampling", ECCV 2020, arXiv 1904.00420; megvii-model/ShuffleNet-Series ``OneShot``).

The search space adds a per-unit mid-channel scale to the DetNAS block choices: unit ``i`` uses
``mid = int(out // 2 * scale_list[scale_ids[i]])`` with ``scale_list = (0.2, 0.4, ..., 1.6)``. ``arch=None`` builds
the published ImageNet subnet (328M multiply-adds with its classifier); a dict encoding builds any other subnet::

    backbone=dict(type='OneShot', arch=dict(stem_channels=16, stage_channels=[64, 160, 320, 640],
                                            last_channels=1024, repeats=[4, 4, 8, 4],
                                            choices=[0, 0, 3, 1, ...], scale_ids=[6, 5, 3, 5, ...]))
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

from mmdet.registry import MODELS

from .archs.searched import parse_oneshot_arch
from .searched_base import SearchedShuffleBackbone


@MODELS.register_module()
class OneShot(SearchedShuffleBackbone):
    """SPOS OneShot backbone.

    Args:
        arch: ``None`` or ``'Published'`` for the published subnet, or a dict encoding with ``choices`` and
            ``scale_ids`` (and optional ``scale_list``); see module docstring.
        out_indices: outputs to return: 0-3 the four stages (strides 4, 8, 16, 32), 4 the last 1x1 conv.
        frozen_stages: -1 freezes nothing; k freezes output groups 0..k (group 0 = stem + stage 1).
        conv_cfg, norm_cfg: layer configs of every conv / norm.
        act_cfg: activation used everywhere (ReLU in the published model).
        norm_eval, with_cp, init_cfg: see :class:`~shufflenet_det.models.backbones.base.ShuffleBackboneBase`.
    """

    def __init__(self,
                 arch: Optional[str | Mapping] = None,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 frozen_stages: int = -1,
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: Optional[dict] = dict(type='BN'),
                 act_cfg: Optional[dict] = dict(type='ReLU'),
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 init_cfg: Optional[dict | list] = None) -> None:
        spec = parse_oneshot_arch(arch)
        super().__init__(spec, out_indices=out_indices, frozen_stages=frozen_stages, conv_cfg=conv_cfg,
                         norm_cfg=norm_cfg, act_cfg=act_cfg, stem_act_cfg=act_cfg,
                         stage_act_cfgs=[act_cfg] * len(spec.repeats), last_act_cfg=act_cfg, norm_eval=norm_eval,
                         with_cp=with_cp, init_cfg=init_cfg)
