"""Compact re-implementations of the *source* layouts the converters read (tests only).

Each module rebuilds one public network with its original module names and channel routing, so a random state dict
in that layout can be created, converted, and the converted backbone compared numerically with the original.
"""
from __future__ import annotations

from typing import Container, Iterable, Optional

import torch
from torch import nn

from helpers import randomize_bn


def randomize_(model: nn.Module, seed: int = 0) -> nn.Module:
    """A reproducible random reference network, in place and in eval mode: random conv / linear weights and random BN
    affine parameters, running statistics and counters (:func:`helpers.randomize_bn` with ``with_weights``)."""
    return randomize_bn(model, seed, with_weights=True)


def run_collecting(x: torch.Tensor, modules: Iterable[nn.Module],
                   keep: Optional[Container[int]] = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Run ``modules`` one after the other on ``x``; return the last output and the outputs of the modules whose
    index is in ``keep`` (every module's when ``keep`` is None): the stage outputs of a reference network."""
    kept = []
    for i, module in enumerate(modules):
        x = module(x)
        if keep is None or i in keep:
            kept.append(x)
    return x, kept
