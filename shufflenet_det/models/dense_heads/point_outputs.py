"""What the one-tensor point heads (``LiteGFLHead``, ``PicoHead``) share: per-level maps ``(B, C + 4 (R + 1), H, W)``
of class logits then the 4 distance distributions, flattened to the deployment tensor and split for decoding."""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor


class FlatPointOutputs:
    """Mixin of the point heads; they set ``num_classes``, ``reg_max`` and ``prior_generator``."""

    num_classes: int
    reg_max: int
    prior_generator: Any

    def flatten_outputs(self, outputs: Sequence[Tensor]) -> Tensor:
        """``(B, N, C + 4 (R + 1))`` over all levels (row-major points, finest level first), sigmoid class scores:
        the raw tensor of the exports."""
        cls, reg = self._split_flat(outputs)
        return torch.cat([cls.sigmoid(), reg], dim=-1)

    def _split_flat(self, outputs: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        """``(B, N, C)`` class logits and ``(B, N, 4 (R + 1))`` distance logits, in :meth:`flatten_outputs` order."""
        flat = torch.cat([o.flatten(2) for o in outputs], dim=2).permute(0, 2, 1)
        cls, reg = flat.split([self.num_classes, 4 * (self.reg_max + 1)], dim=-1)
        return cls, reg

    def _flat_priors(self, outputs: Sequence[Tensor]) -> Tensor:
        """``(N, 4)`` points ``(x, y, stride, stride)`` of every level, in the order of :meth:`flatten_outputs`."""
        sizes = [o.shape[-2:] for o in outputs]
        return torch.cat(self.prior_generator.grid_priors(sizes, dtype=outputs[0].dtype, device=outputs[0].device,
                                                          with_stride=True), dim=0)
