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

from mmdet.registry import MODELS

from .archs.searched import parse_oneshot_arch
from .searched_base import SearchedShuffleBackbone


@MODELS.register_module()
class OneShot(SearchedShuffleBackbone):
    """SPOS OneShot backbone.

    Args:
        arch: ``None`` (default) or ``'Published'`` for the published subnet, or a dict encoding with ``choices`` and
            ``scale_ids`` (and optional ``scale_list``); see module docstring.
        out_indices, act_cfg, **kwargs: see :class:`SearchedShuffleBackbone` (the published model uses ReLU
            everywhere, which ``act_cfg=None`` keeps).
    """

    default_arch = 'Published'
    parse_arch = staticmethod(parse_oneshot_arch)
