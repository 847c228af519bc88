"""torchvision's ``ShuffleNetV2`` classifier (pytorch/vision ``models/shufflenetv2.py``), re-implemented for tests.

Keys: ``conv1.{0,1}``, ``stage{2,3,4}.{i}.branch1.{0 dw,1 bn,2 pw,3 bn}`` (stride 2) / ``branch2.{0,1,3,4,5,6}``,
``conv5.{0,1}``, ``fc``. Stride-1 units ``chunk`` the input into halves; the concatenation is shuffled with 2 groups.
"""
from __future__ import annotations

import torch
from torch import nn

from . import run_collecting

CHANNELS = {0.5: (24, 48, 96, 192, 1024), 1.0: (24, 116, 232, 464, 1024), 1.5: (24, 176, 352, 704, 1024),
            2.0: (24, 244, 488, 976, 2048)}


def _shuffle2(x: torch.Tensor) -> torch.Tensor:
    b, c, h, w = x.shape
    return x.view(b, 2, c // 2, h, w).transpose(1, 2).contiguous().view(b, c, h, w)


class InvertedResidual(nn.Module):
    def __init__(self, inp: int, oup: int, stride: int) -> None:
        super().__init__()
        self.stride, half = stride, oup // 2
        if stride > 1:
            self.branch1 = nn.Sequential(
                nn.Conv2d(inp, inp, 3, stride, 1, groups=inp, bias=False), nn.BatchNorm2d(inp),
                nn.Conv2d(inp, half, 1, bias=False), nn.BatchNorm2d(half), nn.ReLU(inplace=True))
        else:
            self.branch1 = nn.Sequential()
        self.branch2 = nn.Sequential(
            nn.Conv2d(inp if stride > 1 else half, half, 1, bias=False), nn.BatchNorm2d(half), nn.ReLU(inplace=True),
            nn.Conv2d(half, half, 3, stride, 1, groups=half, bias=False), nn.BatchNorm2d(half),
            nn.Conv2d(half, half, 1, bias=False), nn.BatchNorm2d(half), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            a, b = x.chunk(2, dim=1)
            return _shuffle2(torch.cat((a, self.branch2(b)), 1))
        return _shuffle2(torch.cat((self.branch1(x), self.branch2(x)), 1))


class TorchvisionShuffleNetV2(nn.Module):
    def __init__(self, widen_factor: float = 1.0, num_classes: int = 10) -> None:
        super().__init__()
        ch = CHANNELS[widen_factor]
        self.conv1 = nn.Sequential(nn.Conv2d(3, ch[0], 3, 2, 1, bias=False), nn.BatchNorm2d(ch[0]),
                                   nn.ReLU(inplace=True))
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = ch[0]
        for name, repeats, cout in zip(('stage2', 'stage3', 'stage4'), (4, 8, 4), ch[1:4]):
            units = [InvertedResidual(cin, cout, 2)] + [InvertedResidual(cout, cout, 1) for _ in range(repeats - 1)]
            setattr(self, name, nn.Sequential(*units))
            cin = cout
        self.conv5 = nn.Sequential(nn.Conv2d(cin, ch[4], 1, bias=False), nn.BatchNorm2d(ch[4]),
                                   nn.ReLU(inplace=True))
        self.fc = nn.Linear(ch[4], num_classes)

    def stage_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Outputs of stage 2, 3, 4 and conv5."""
        return run_collecting(self.maxpool(self.conv1(x)), (self.stage2, self.stage3, self.stage4, self.conv5))[1]
