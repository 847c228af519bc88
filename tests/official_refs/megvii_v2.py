"""The official Megvii ShuffleNetV2 (megvii-model/ShuffleNet-Series, ``ShuffleNetV2/``), re-implemented for tests.

Module names as in the official code: ``first_conv``, ``maxpool``, ``features.N.branch_proj`` (stride 2) /
``branch_main``, ``conv_last``, ``classifier.0`` (bias-free). Routing as in the official block: a stride-1 block
keeps the even input channels and processes the odd ones, ``cat(even, main(odd))``; a stride-2 block returns
``cat(proj(x), main(x))`` with ``proj`` keeping the input width and ``main`` producing the rest; no shuffle after.
"""
from __future__ import annotations

import torch
from torch import nn

from . import run_collecting

#: ``[stem, stage2, stage3, stage4, conv_last]`` per official model size.
CHANNELS = {'0.5x': (24, 48, 96, 192, 1024), '1.0x': (24, 116, 232, 464, 1024),
            '1.5x': (24, 176, 352, 704, 1024), '2.0x': (24, 244, 488, 976, 2048)}
REPEATS = (4, 8, 4)


def _pw(cin: int, cout: int, relu: bool) -> list[nn.Module]:
    layers = [nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout)]
    return layers + [nn.ReLU(inplace=True)] if relu else layers


def _dw(ch: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(ch, ch, 3, stride, 1, groups=ch, bias=False), nn.BatchNorm2d(ch)]


class MegviiV2Block(nn.Module):
    def __init__(self, inp: int, oup: int, mid: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.branch_main = nn.Sequential(*_pw(inp, mid, True), *_dw(mid, stride), *_pw(mid, oup - inp, True))
        if stride == 2:
            self.branch_proj = nn.Sequential(*_dw(inp, stride), *_pw(inp, inp, True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return torch.cat((x[:, 0::2], self.branch_main(x[:, 1::2])), 1)
        return torch.cat((self.branch_proj(x), self.branch_main(x)), 1)


class MegviiShuffleNetV2(nn.Module):
    def __init__(self, model_size: str = '1.0x', n_class: int = 10) -> None:
        super().__init__()
        ch = CHANNELS[model_size]
        self.first_conv = nn.Sequential(nn.Conv2d(3, ch[0], 3, 2, 1, bias=False), nn.BatchNorm2d(ch[0]),
                                        nn.ReLU(inplace=True))
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        blocks, cin = [], ch[0]
        self.stage_ends = []
        for repeats, cout in zip(REPEATS, ch[1:4]):
            for i in range(repeats):
                if i == 0:
                    blocks.append(MegviiV2Block(cin, cout, cout // 2, 2))
                else:
                    blocks.append(MegviiV2Block(cin // 2, cout, cout // 2, 1))
                cin = cout
            self.stage_ends.append(len(blocks) - 1)
        self.features = nn.Sequential(*blocks)
        self.conv_last = nn.Sequential(*_pw(cin, ch[4], True))
        self.classifier = nn.Sequential(nn.Linear(ch[4], n_class, bias=False))

    def stage_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Outputs of stage 2, 3, 4 and of ``conv_last``."""
        x, outs = run_collecting(self.maxpool(self.first_conv(x)), self.features, self.stage_ends)
        return outs + [self.conv_last(x)]
