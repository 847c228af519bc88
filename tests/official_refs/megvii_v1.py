"""The official Megvii ShuffleNetV1 (megvii-model/ShuffleNet-Series, ``ShuffleNetV1/``), re-implemented for tests.

Module names as in the official code: ``first_conv``, ``maxpool``, ``features.N.branch_main_1`` (grouped pw + BN +
ReLU, dw + BN) / ``branch_main_2`` (grouped pw + BN), ``classifier.0``. The shuffle between the two branches views
the ``c`` channels as ``(c/g, g)`` and transposes; stride 1 returns ``relu(x + main)``, stride 2
``cat(avgpool(x), relu(main))``. The first pw conv of the first block is not grouped.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import run_collecting

#: ``[stem, stage2, stage3, stage4]`` per (group, model size), the official tables.
CHANNELS = {
    (3, '0.5x'): (12, 120, 240, 480), (3, '1.0x'): (24, 240, 480, 960), (3, '1.5x'): (24, 360, 720, 1440),
    (3, '2.0x'): (48, 480, 960, 1920), (8, '0.5x'): (16, 192, 384, 768), (8, '1.0x'): (24, 384, 768, 1536),
    (8, '1.5x'): (24, 576, 1152, 2304), (8, '2.0x'): (48, 768, 1536, 3072),
}
REPEATS = (4, 8, 4)


class MegviiV1Block(nn.Module):
    def __init__(self, inp: int, oup: int, group: int, first_group: bool, stride: int) -> None:
        super().__init__()
        self.stride, self.group = stride, group
        mid = oup // 4
        out = oup - inp if stride == 2 else oup
        self.branch_main_1 = nn.Sequential(
            nn.Conv2d(inp, mid, 1, groups=1 if first_group else group, bias=False), nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False), nn.BatchNorm2d(mid))
        self.branch_main_2 = nn.Sequential(nn.Conv2d(mid, out, 1, groups=group, bias=False), nn.BatchNorm2d(out))
        if stride == 2:
            self.branch_proj = nn.AvgPool2d(3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.branch_main_1(x)
        if self.group > 1:
            b, c, h, w = y.shape
            y = y.reshape(b, c // self.group, self.group, h, w).transpose(1, 2).reshape(b, c, h, w)
        y = self.branch_main_2(y)
        if self.stride == 1:
            return F.relu(x + y)
        return torch.cat((self.branch_proj(x), F.relu(y)), 1)


class MegviiShuffleNetV1(nn.Module):
    def __init__(self, group: int = 3, model_size: str = '1.0x', n_class: int = 10) -> None:
        super().__init__()
        ch = CHANNELS[(group, model_size)]
        self.first_conv = nn.Sequential(nn.Conv2d(3, ch[0], 3, 2, 1, bias=False), nn.BatchNorm2d(ch[0]),
                                        nn.ReLU(inplace=True))
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        blocks, cin = [], ch[0]
        self.stage_ends = []
        for s, (repeats, cout) in enumerate(zip(REPEATS, ch[1:])):
            for i in range(repeats):
                blocks.append(MegviiV1Block(cin, cout, group, first_group=s == 0 and i == 0,
                                            stride=2 if i == 0 else 1))
                cin = cout
            self.stage_ends.append(len(blocks) - 1)
        self.features = nn.Sequential(*blocks)
        self.classifier = nn.Sequential(nn.Linear(cin, n_class, bias=False))

    def stage_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Outputs of stage 2, 3 and 4."""
        return run_collecting(self.maxpool(self.first_conv(x)), self.features, self.stage_ends)[1]
