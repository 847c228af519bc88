"""The peer files of the benchmark's peer mode (``--peer-onnx`` / ``--peer-ncnn``), exported as their projects do.

nanodet cannot be installed here, so NanoDet-Plus is the plain-torch re-implementation of :mod:`.nanodet_plus`,
exported the way nanodet's ``tools/export_onnx.py`` does it: ``torch.onnx.export`` of the eval model's
``forward_onnx`` (the head's raw tensor, class scores through a sigmoid; no post-processing), TorchScript exporter,
opset 11, input ``data``, output ``output``, ``keep_initializers_as_inputs=True``, BatchNorm folded by the exporter
in eval mode, then simplified with onnxsim when it is installed, else onnxslim (the line printed says which). Its
ncnn files are pnnx's conversion of the same module (:func:`shufflenet_det.deploy.ncnn_export.pnnx_convert`, as the
project's own ncnn export). With a nanodet checkout, pass nanodet's own export to the benchmark instead.

torchvision's ShuffleNetV2 1.0x (``torchvision.models.shufflenet_v2_x1_0()``, the real package: run with the
openmmlab stack, ``.venv-openmmlab``) is cut to the network the project's bare backbone export holds: with the
benchmark's default backbone arguments (``ShuffleNetV2``, ``out_indices`` (1, 2, 3)) the outputs of ``stage2``,
``stage3`` and ``stage4`` (``conv1`` and ``maxpool`` before them; no ``conv5``, pooling or ``fc``); ``--out-indices``
takes the project's numbering (0 = conv1 + maxpool ... 4 = conv5). Exported at 224x224 as a torchvision user does:
``torch.onnx.export(model, x, path, opset_version=17)`` with every other argument left at its default.

Weights are random and seeded (latency does not depend on them). Each export is run once in ONNX Runtime and
compared with the module it came from (the line printed gives the largest difference). Usage, from ``tests/``::

    ../.venv/bin/python -m official_refs.export_peers --what nanodet-plus-m_320 \\
        --onnx ../work_dirs/peers/nanodet-plus-m_320.onnx --ncnn ../work_dirs/peers/nanodet-plus-m_320
    ../.venv-openmmlab/bin/python -m official_refs.export_peers --what torchvision-shufflenetv2-1.0x \\
        --onnx ../work_dirs/peers/torchvision_shufflenetv2_224.onnx
    # a bound: NanoDet-Plus-m without any channel shuffle (not the same function), timed as another peer
    ../.venv/bin/python -m official_refs.export_peers --what nanodet-plus-m_320 --variant no-shuffle \\
        --onnx ../work_dirs/peers/nanodet-plus-m_320_no-shuffle.onnx \\
        --ncnn ../work_dirs/peers/nanodet-plus-m_320_no-shuffle
"""
from __future__ import annotations

import argparse
import importlib.util
import inspect
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
from torch import nn

from shufflenet_det.utils.cli import check_output_path, fail, run_main

from . import randomize_
from .nanodet_plus import MODELS as NANODET_MODELS
from .nanodet_plus import NanoDetPlus

TORCHVISION = 'torchvision-shufflenetv2-1.0x'
WHAT = (*NANODET_MODELS, TORCHVISION)
SEED = 0


class OnnxForward(nn.Module):
    """``net.forward_onnx`` as a module's ``forward``: what nanodet's export traces (its head switches to
    ``_forward_onnx`` while ``torch.onnx.is_in_onnx_export()``)."""

    def __init__(self, net: NanoDetPlus) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_onnx(x)


class Stages(nn.Module):
    """torchvision's ShuffleNetV2 modules run in order up to the last of ``out_indices`` (the project's numbering:
    0 = conv1 + maxpool, 1-3 = stage2-4, 4 = conv5), returning the outputs of ``out_indices``."""

    def __init__(self, tv: nn.Module, out_indices: Sequence[int]) -> None:
        super().__init__()
        blocks = [nn.Sequential(tv.conv1, tv.maxpool), tv.stage2, tv.stage3, tv.stage4, tv.conv5]
        self.out_indices = tuple(out_indices)
        self.blocks = nn.ModuleList(blocks[:max(self.out_indices) + 1])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outs = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)


class UnshuffledUnit(nn.Module):
    """A ShuffleNet V2 unit of the re-implemented backbone without its channel shuffle (the ``no-shuffle`` variant:
    not the same function, the same convolutions and data sizes; what is left when every shuffle costs nothing)."""

    def __init__(self, unit: nn.Module) -> None:
        super().__init__()
        self.unit = unit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        unit = self.unit
        if unit.stride == 1:
            a, b = x.chunk(2, dim=1)
            return torch.cat((a, unit.branch2(b)), 1)
        return torch.cat((unit.branch1(x), unit.branch2(x)), 1)


VARIANTS = ('as-published', 'no-shuffle')


def nanodet_module(name: str, variant: str = 'as-published') -> tuple[nn.Module, int]:
    """The re-implemented NanoDet-Plus ``name`` with seeded random weights, in eval mode, wrapped so that its
    ``forward`` is ``forward_onnx``; and its input size. ``variant='no-shuffle'`` drops every unit's channel shuffle
    (a bound for the benchmark: what no exact rewrite of the shuffles can beat)."""
    net = randomize_(NanoDetPlus(name), seed=SEED)
    if variant == 'no-shuffle':
        for stage in (net.backbone.stage2, net.backbone.stage3, net.backbone.stage4):
            for i, unit in enumerate(stage):
                stage[i] = UnshuffledUnit(unit)
    return OnnxForward(net).eval(), int(net.input_size)


def _dynamo_off() -> dict[str, Any]:
    """``dynamo=False`` where torch has the argument (>= 2.9 defaults to the dynamo exporter; nanodet's export, written
    for older torch, is the TorchScript one)."""
    return {'dynamo': False} if 'dynamo' in inspect.signature(torch.onnx.export).parameters else {}


def export_nanodet_onnx(module: nn.Module, size: int, path: Path) -> str:
    """nanodet's ``tools/export_onnx.py`` on ``module``: export, then simplify; returns the simplifier's name."""
    from shufflenet_det.deploy.onnx_export import simplify_onnx
    dummy = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(SEED))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter('ignore')
        torch.onnx.export(module, dummy, str(path), verbose=False, keep_initializers_as_inputs=True,
                          opset_version=11, input_names=['data'], output_names=['output'], **_dynamo_off())
    method = 'onnxsim' if importlib.util.find_spec('onnxsim') is not None else 'onnxslim'
    return simplify_onnx(path, method)


def torchvision_module(out_indices: Sequence[int]) -> nn.Module:
    """torchvision's ``shufflenet_v2_x1_0()`` (seeded random init) cut to ``out_indices``; fails without
    torchvision."""
    try:
        from torchvision.models import shufflenet_v2_x1_0
    except Exception as exc:  # noqa: BLE001 - a missing or broken torchvision is a user's environment problem
        fail(f'--what {TORCHVISION} needs torchvision ({type(exc).__name__}: {exc}); run it with the openmmlab '
             'stack: ../.venv-openmmlab/bin/python -m official_refs.export_peers ...')
    torch.manual_seed(SEED)
    return Stages(shufflenet_v2_x1_0(), out_indices).eval()


def check_like_project_backbone(module: nn.Module, out_indices: Sequence[int], size: int) -> list[tuple[int, ...]]:
    """The output shapes of ``module``, which must equal those of the project's ``ShuffleNetV2`` 1.0x with the same
    ``out_indices`` (the network the benchmark's ``--backbone ShuffleNetV2`` row exports)."""
    from shufflenet_det.deploy.cli import backbone_from_args
    x = torch.zeros(1, 3, size, size)
    ours = backbone_from_args('ShuffleNetV2', dict(out_indices=list(out_indices)))
    with torch.no_grad():
        theirs_shapes = [tuple(o.shape) for o in module(x)]
        ours_shapes = [tuple(o.shape) for o in ours(x)]
    if theirs_shapes != ours_shapes:
        fail(f'torchvision modules give {theirs_shapes}, shufflenet_det ShuffleNetV2 {ours_shapes}: not the same '
             'network')
    return theirs_shapes


def max_scaled_difference(path: Path, module: nn.Module, size: int) -> float:
    """ONNX Runtime against ``module`` on one seeded input: max |difference| / max(1, max |module output|)."""
    import onnxruntime as ort
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(SEED + 1))
    sess = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        out = module(x)
    expected = [out] if isinstance(out, torch.Tensor) else list(out)
    worst = 0.0
    for g, e in zip(got, expected, strict=True):
        e_np = e.numpy().astype(np.float64)
        worst = max(worst, float(np.abs(g - e_np).max()) / max(1.0, float(np.abs(e_np).max())))
    return worst


def export_ncnn(module: nn.Module, size: int, stem: str) -> tuple[Path, Path]:
    """pnnx's conversion of ``module`` (:func:`shufflenet_det.deploy.ncnn_export.pnnx_convert`) to ``stem.param`` /
    ``stem.bin``, written atomically."""
    if importlib.util.find_spec('pnnx') is None:
        fail('--ncnn needs pnnx (pip install -r requirements/deploy.txt; it is in .venv, not in .venv-openmmlab)')
    from shufflenet_det.deploy.ncnn_export import ncnn_paths, pnnx_convert
    from shufflenet_det.utils.io import atomic_outputs
    param, bin_path, _ = ncnn_paths(stem)
    with atomic_outputs([param, bin_path], '--ncnn') as (tmp_param, tmp_bin), \
            tempfile.TemporaryDirectory(dir=param.parent, prefix='.pnnx_') as work:
        pnnx_convert(module, torch.zeros(1, 3, size, size), tmp_param, tmp_bin, Path(work))
    return param, bin_path


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog='python -m official_refs.export_peers', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--what', required=True, choices=WHAT, help='the network to export')
    parser.add_argument('--onnx', required=True, metavar='OUT.onnx', help='the ONNX file to write')
    parser.add_argument('--ncnn', metavar='OUTSTEM', help='also write OUTSTEM.param / OUTSTEM.bin (pnnx)')
    parser.add_argument('--variant', choices=VARIANTS, default='as-published',
                        help='NanoDet-Plus: the network as published (default), or no-shuffle: every unit without '
                             'its channel shuffle - not the same function, a bound on what rewriting the shuffles '
                             'can gain (time it next to the as-published peer in one benchmark run)')
    parser.add_argument('--size', type=int, help='input size S (SxS; default: the NanoDet model\'s, 224 for '
                                                 'torchvision)')
    parser.add_argument('--out-indices', type=int, nargs='+', default=[1, 2, 3], metavar='I',
                        help=f'{TORCHVISION}: the outputs, in the project\'s numbering (0 = conv1 + maxpool, '
                             '1-3 = stage2-4, 4 = conv5; default 1 2 3, the benchmark\'s default backbone)')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if not args.onnx.endswith('.onnx'):
        fail(f'--onnx {args.onnx!r} must end with .onnx')
    if args.size is not None and args.size < 32:
        fail(f'--size must be >= 32, got {args.size}')
    if any(not 0 <= i <= 4 for i in args.out_indices):
        fail(f'--out-indices must be in 0..4 (0 = conv1 + maxpool ... 4 = conv5), got {args.out_indices}')
    check_output_path(args.onnx, '--onnx')
    onnx_path = Path(args.onnx)
    if args.what == TORCHVISION and args.variant != 'as-published':
        fail(f'--variant {args.variant} applies to the NanoDet-Plus models, not {args.what}')
    if args.what == TORCHVISION:
        size = args.size or 224
        module = torchvision_module(sorted(set(args.out_indices)))
        shapes = check_like_project_backbone(module, sorted(set(args.out_indices)), size)
        from shufflenet_det.utils.io import atomic_outputs
        with atomic_outputs([onnx_path], '--onnx') as (tmp,), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter('ignore')
            torch.onnx.export(module, torch.zeros(1, 3, size, size), str(tmp), opset_version=17)
        print(f'[export_peers] torchvision {importlib.import_module("torchvision").__version__} shufflenet_v2_x1_0 '
              f'up to out_indices {sorted(set(args.out_indices))} (outputs {shapes}, as shufflenet_det ShuffleNetV2 '
              f'with the same out_indices), torch {torch.__version__} torch.onnx.export defaults, opset 17, '
              f'{size}x{size}')
    else:
        module, default_size = nanodet_module(args.what, args.variant)
        size = args.size or default_size
        from shufflenet_det.utils.io import atomic_outputs
        with atomic_outputs([onnx_path], '--onnx') as (tmp,):
            simplifier = export_nanodet_onnx(module, size, tmp)
        print(f'[export_peers] {args.what} {args.variant} (tests/official_refs/nanodet_plus.py, seed {SEED}) as '
              'nanodet\'s '
              f'tools/export_onnx.py: torch {torch.__version__} TorchScript exporter, opset 11, input "data", '
              f'output "output", BN folded in eval mode, simplified with {simplifier}, {size}x{size}')
    print(f'[export_peers] wrote {onnx_path}; ONNX Runtime vs the module: max |diff| '
          f'{max_scaled_difference(onnx_path, module, size):.2e} of max(1, max |output|)')
    if args.ncnn:
        param, bin_path = export_ncnn(module, size, args.ncnn)
        print(f'[export_peers] wrote {param} and {bin_path} (pnnx)')
    return 0


if __name__ == '__main__':
    sys.exit(run_main(main))
