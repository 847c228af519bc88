"""Export-friendly channel operations shared by every ShuffleNet family.

ShuffleNet V1 (Zhang et al., arXiv 1707.01083) introduced the channel shuffle; ShuffleNet V2 (Ma et al.,
arXiv 1807.11164) added the channel split. Both are written with static slicing and reshape/transpose only, so
they export to ONNX ``Slice``/``Reshape``/``Transpose`` and pnnx maps them onto ncnn ``Slice``/``ShuffleChannel``.
"""
from __future__ import annotations

import torch


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave ``groups`` channel groups: ``(b, g*n, h, w) -> view(b, g, n) -> transpose -> (b, n*g, h, w)``."""
    b, c, h, w = x.shape
    x = x.view(b, groups, c // groups, h, w)
    x = torch.transpose(x, 1, 2).contiguous()
    return x.view(b, c, h, w)


def channel_split(x: torch.Tensor, first: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split channels into ``[:first]`` and ``[first:]`` by slicing (an ONNX/ncnn ``Slice``, not ``chunk``)."""
    return x[:, :first], x[:, first:]
