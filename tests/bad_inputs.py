"""Shared pieces of the bad-input suites (tests/tools/test_bad_inputs_*.py, tests/deploy/test_bad_inputs_*.py): the
work folder with the inputs of every case, the in-process tool runner and a checkpoint that runs code when loaded."""
from __future__ import annotations

import builtins
import json
import signal
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Iterator

import numpy as np
import pytest
import torch

import deploy_fixtures as fx
from tiny_mini_coco import make_dataset, write_config


class OpenOnLoad:
    """Unpickling this calls ``open(marker, 'w')``: a checkpoint that runs code when it is loaded unsafely."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.open, (self.marker, 'w')


#: The shallow ShuffleNetV2.Large of test_shufflenet_v2_large.SHALLOW as a --cfg-options dict encoding.
LARGE = {'base': 'Large', 'stem_channels': [8, 8, 16], 'stage_channels': [16, 32, 64, 128], 'repeats': [2, 2, 3, 2],
         'groups': 4, 'last_channels': 48}
EXLARGE = {'base': 'ExLarge', 'stem_channels': [8, 16, 32], 'stage_channels': [40, 80, 160, 320],
           'repeats': [2, 2, 3, 2], 'groups': 4}


def _official_large(arch: dict) -> dict:
    """A checkpoint in the official Megvii layout of the shallow network ``arch`` (test_shufflenet_v2_large)."""
    from official_refs.megvii_large import OfficialExLarge, OfficialLarge, official_checkpoint
    from shufflenet_det.models.backbones.archs import parse_large_arch
    spec = parse_large_arch(arch)
    common = dict(stem=spec.stem_channels, stages=spec.stage_channels, repeats=spec.repeats, groups=spec.groups,
                  aux=(8, 16, 32), n_class=10)
    torch.manual_seed(0)
    model = (OfficialLarge(last=spec.last_channels, eps=spec.bn_eps, **common) if spec.base == 'Large'
             else OfficialExLarge(**common))
    return official_checkpoint(model)


@pytest.fixture(scope='module')
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One work folder with the inputs of every case (no case may change it)."""
    from nas_fixtures import write_search_config
    from shufflenet_det.deploy.onnx_export import export_backbone_onnx, export_detector_onnx
    from shufflenet_det.deploy.quantize import quantize_unchecked
    from shufflenet_det.nas.data import write_coco_split
    from shufflenet_det.utils.build import build_detector
    root = tmp_path_factory.mktemp('bad_new_tools')
    data = make_dataset(root / 'mini')
    write_config(root / 'tiny.py', data)
    write_coco_split(data / 'annotations' / 'instances_train2017.json', 6)
    write_search_config(root / 'search.py', data, flops_limit=None)
    torch.save({'state_dict': build_detector(root / 'search.py').state_dict()}, root / 'supernet.pth')
    torch.save({'state_dict': fx.backbone(0.5, (3,)).state_dict()}, root / 'backbone.pth')  # the wrong architecture
    # a backbone export, a lite detector without NMS (raw [1, N, C + 32]) and an int8 copy of the backbone
    export_backbone_onnx(fx.backbone(0.5, (3,)), root / 'bb.onnx', (1, 3, 64, 64), verbose=False)
    lite = fx.spread_lite()
    export_detector_onnx(lite, root / 'lite.onnx', fx.images(lite, (64, 64), 1), with_nms=False, verbose=False)
    report = json.loads((root / 'bb.onnx.json').read_text())
    calib = [np.random.default_rng(i).standard_normal((1, 3, 64, 64)).astype(np.float32) for i in range(2)]
    quantize_unchecked(root / 'bb.onnx', root / 'bb.int8.onnx', calib)
    (root / 'bb.int8.onnx.json').write_text(json.dumps(dict(report, quantization=dict(format='QDQ'))))
    # the int8 model again, next to the float model's report (copied by hand, or a re-export over the float name)
    (root / 'sneaky.onnx').write_bytes((root / 'bb.int8.onnx').read_bytes())
    (root / 'sneaky.onnx.json').write_text(json.dumps(report))
    # broken models and reports
    (root / 'text.onnx').write_text('I am a text file, not an ONNX model\n')
    (root / 'text.onnx.json').write_text((root / 'lite.onnx.json').read_text())
    (root / 'lone.onnx').write_bytes((root / 'bb.onnx').read_bytes())  # no report next to it
    for name, content in (('badrep', '{"what": "backb'), ('norep', '{"foo": 1}')):
        (root / f'{name}.onnx').write_bytes((root / 'bb.onnx').read_bytes())
        (root / f'{name}.onnx.json').write_text(content)
    lite_report = json.loads((root / 'lite.onnx.json').read_text())
    for name, change in (('lite_decoder', dict(decoder='foo')), ('lite_regmax', dict(reg_max=None)),
                         ('lite_classes', dict(num_classes=7))):
        post = {k: v for k, v in {**lite_report['postprocess'], **change}.items() if v is not None}
        (root / f'{name}.onnx').write_bytes((root / 'lite.onnx').read_bytes())
        (root / f'{name}.onnx.json').write_text(json.dumps(dict(lite_report, postprocess=post)))
    np.save(root / 't_wrong.npy', np.zeros((1, 3, 32, 32), np.float32))
    (root / 't_text.npy').write_text('not numpy\n')
    # configs
    (root / 'broken.py').write_text('model = dict(type=\n')
    (root / 'nodataset.py').write_text("model = dict(type='RetinaNet')\n")
    (root / 'bbmodel.py').write_text("model = dict(type='ShuffleNetV2', widen_factor=0.5)\n")
    (root / 'nodata.py').write_text(f"_base_ = {str(root / 'tiny.py')!r}\ndata_root = {str(root / 'nowhere')!r}\n"
                                    "train_dataloader = dict(dataset=dict(data_root=data_root))\n")
    # nas: resume states and annotation files that are not what they claim
    for name, content in (('state_corrupt', '{"version": 1, "search": {"gener'), ('state_empty', ''),
                          ('state_old', '{"version": 0}')):
        (root / name).mkdir()
        (root / name / 'search_state.json').write_text(content)
    (root / 'empty.json').write_text('')
    (root / 'noimages.json').write_text('{"images": [], "annotations": [], "categories": []}')
    (root / 'list.json').write_text('[1, 2, 3]')
    # Megvii ShuffleNetV2.Large / ExLarge checkpoints (shallow), one with a tensor missing
    torch.save(_official_large(LARGE), root / 'official_Large.pth')
    torch.save(_official_large(EXLARGE), root / 'official_ExLarge.pth')
    missing = _official_large(LARGE)
    missing['state_dict'].pop(next(k for k in missing['state_dict'] if k.endswith('branch_main.0.conv.weight')))
    torch.save(missing, root / 'official_Large_missing.pth')
    (root / 'empty.pth').write_bytes(b'')
    # outputs that cannot be written: below a regular file, into a read-only folder
    (root / 'a_file').write_text('a regular file of the user: nothing can be created below it\n')
    (root / 'ro').mkdir()
    (root / 'ro').chmod(0o555)
    yield root
    (root / 'ro').chmod(0o755)


@pytest.fixture(autouse=True)
def keep_signal_handlers():
    """run_main installs SIGTERM / SIGINT handlers: give pytest its own back afterwards."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def run_in_process(tool: ModuleType, argv: list[str], capsys) -> subprocess.CompletedProcess:
    """``tool.main(argv)`` under the tool's own ``run_main``: exit status, stdout, stderr (argparse's exit included;
    any other exception escapes, as a traceback would)."""
    capsys.readouterr()
    try:
        code = tool.run_main(tool.main, argv)
    except SystemExit as exc:  # argparse: usage + 'error: ...' on stderr, exit 2
        code = exc.code if isinstance(exc.code, int) else 1
    out = capsys.readouterr()
    return subprocess.CompletedProcess(argv, code, out.out, out.err)
