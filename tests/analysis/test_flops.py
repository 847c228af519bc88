"""Multiply-adds and parameters: every published variant against its reference, the counter, the CLI."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

import shufflenet_det  # noqa: F401
from helpers import load_script
from shufflenet_det.analysis import (
    PUBLISHED_VARIANTS,
    PublishedVariant,
    classifier_complexity,
    model_complexity,
    published_variants,
    register_published_variant,
)
from zygote import run_python


@pytest.mark.parametrize('variant', PUBLISHED_VARIANTS, ids=[v.name for v in PUBLISHED_VARIANTS])
@pytest.mark.slow
def test_published_variant_matches_reference(variant: PublishedVariant) -> None:
    """Each published classifier (every family registered in PUBLISHED_VARIANTS) is within its tolerance.

    The counts are integers from the layer shapes (no float arithmetic of the CPU); ``rel_tol`` covers only the
    published figures' rounding and counting conventions, as argued where each variant is registered.
    """
    res = classifier_complexity(variant.backbone, variant.input_size, num_classes=variant.num_classes,
                                classifier_bias=variant.classifier_bias)
    assert res['flops'] == pytest.approx(variant.flops, rel=variant.rel_tol), (res['flops'], variant.flops)
    assert res['params'] == pytest.approx(variant.params, rel=variant.rel_tol), (res['params'], variant.params)


def test_my_families_are_registered() -> None:
    names = {v.name for v in published_variants(['ShuffleNetV1', 'ShuffleNetV2'])}
    assert {f'ShuffleNetV1 g{g} {w:.1f}x' for g in (3, 8) for w in (0.5, 1.0, 1.5, 2.0)} <= names
    assert {f'ShuffleNetV2 {w:.1f}x{suffix}' for w in (0.5, 1.0, 1.5, 2.0) for suffix in ('', ' megvii')} <= names
    with pytest.raises(ValueError, match='families'):
        published_variants(['NoSuchNet'])
    with pytest.raises(ValueError, match='already registered'):
        register_published_variant(PUBLISHED_VARIANTS[0])


def test_v2_1x_matches_paper_count_and_torchvision_params() -> None:
    """ShuffleNet V2 1.0x: 145.8M multiply-adds (Megvii count, within 1 %) and torchvision's exact 2,278,604 params."""
    res = classifier_complexity(dict(type='ShuffleNetV2', widen_factor=1.0))
    # an integer count (no float arithmetic) vs Megvii's 145.8 M, whose counting is ~0.6 % above ours
    assert res['flops'] == pytest.approx(145.8e6, rel=0.01)
    assert res['params'] == 2278604
    assert res['out_channels'] == (24, 116, 232, 464, 1024)
    # only convolutions and the classifier are counted
    assert set(res['flops_by_operator']) <= {'conv', 'linear', 'addmm'}


def _hook_macs(model: nn.Module, size: int) -> int:
    """Independent count: conv and linear multiply-adds from forward hooks (weights per output element)."""
    total = 0

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        total += output.numel() * module.weight[0].numel()

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model.eval()(torch.randn(1, 3, size, size))
    for h in handles:
        h.remove()
    return total


@pytest.mark.parametrize('backbone', [dict(type='ShuffleNetV1', groups=8, widen_factor=0.5),
                                      dict(type='ShuffleNetV2', widen_factor=1.0)])
def test_mmengine_count_equals_independent_hook_count(backbone: dict) -> None:
    from shufflenet_det.analysis import ImageClassifier, last_output_backbone
    net = last_output_backbone(backbone)
    model = ImageClassifier(net, net.out_channels[-1], 1000, bias=False)
    assert model_complexity(model, 224)['flops'] == _hook_macs(model, 224)


def test_counter_is_exact_on_a_known_model() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=True), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(8, 10))
    res = model_complexity(model, (16, 20))
    assert res['flops'] == 16 * 20 * (8 * 3 * 9 + 8 * 9) + 8 * 10
    assert res['params'] == sum(p.numel() for p in model.parameters())
    assert res['input_shape'] == (1, 3, 16, 20)
    # mmengine's default handles also count BN (and pooling): strictly more
    assert model_complexity(model, (16, 20), op_set='mmengine')['flops'] > res['flops']
    with pytest.raises(ValueError, match='op_set'):
        model_complexity(model, 16, op_set='all')
    with pytest.raises(ValueError, match='input_shape'):
        model_complexity(model, (0, 16))
    with pytest.raises(ValueError, match='backbone type'):
        classifier_complexity(dict(type='NoSuchBackbone'))


@pytest.mark.slow
def test_detector_counted_in_tensor_mode(tmp_path, capsys) -> None:
    """A whole detector: extract_feat + head forward, equal to the sum of its parts counted separately."""
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')
    cfg = dict(
        type='RetinaNet',
        data_preprocessor=dict(type='DetDataPreprocessor', mean=[0, 0, 0], std=[1, 1, 1], bgr_to_rgb=False),
        backbone=dict(type='ShuffleNetV2', widen_factor=0.5, out_indices=(1, 2, 3)),
        neck=dict(type='FPN', in_channels=[48, 96, 192], out_channels=32, start_level=0, add_extra_convs='on_output',
                  num_outs=4),
        bbox_head=dict(type='RetinaHead', num_classes=3, in_channels=32, stacked_convs=1, feat_channels=32,
                       anchor_generator=dict(type='AnchorGenerator', octave_base_scale=4, scales_per_octave=3,
                                             ratios=[0.5, 1.0, 2.0], strides=[8, 16, 32, 64]),
                       bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.0] * 4, target_stds=[1.0] * 4)),
        test_cfg=dict(nms_pre=100, min_bbox_size=0, score_thr=0.05, nms=dict(type='nms', iou_threshold=0.5),
                      max_per_img=10))
    model = MODELS.build(cfg)
    res = model_complexity(model, (96, 128))
    cli_res = _run_cli_on_config(cfg, tmp_path, capsys)
    assert (cli_res['flops'], cli_res['params']) == (res['flops'], res['params'])
    backbone = model_complexity(model.backbone, (96, 128))['flops']
    assert backbone < res['flops']
    assert res['params'] == sum(p.numel() for p in model.parameters())

    class BackboneNeckHead(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone, self.neck, self.head = model.backbone, model.neck, model.bbox_head

        def forward(self, x: torch.Tensor) -> tuple:
            return self.head(self.neck(self.backbone(x)))

    assert res['flops'] == model_complexity(BackboneNeckHead(), (96, 128))['flops']


def _load_cli():
    return load_script('tools/analysis_tools/get_flops.py')


def _run_cli_on_config(model_cfg: dict, tmp_path: Path, capsys) -> dict:
    """get_flops.py on a detector config file (written to tmp_path), results read back from --json."""
    cfg_file, out = tmp_path / 'detector.py', tmp_path / 'detector.json'
    cfg_file.write_text(f"custom_imports = dict(imports=['shufflenet_det'])\ndefault_scope = 'mmdet'\n"
                        f"model = {model_cfg!r}\n")
    assert _load_cli().main([str(cfg_file), '--shape', '96', '128', '--json', str(out)]) == 0
    assert 'detector' in capsys.readouterr().out
    return json.loads(out.read_text())


@pytest.mark.slow
def test_cli_subprocess() -> None:
    """The documented command line, run as a script from the repository root."""
    proc = run_python(['tools/analysis_tools/get_flops.py', '--backbone', 'ShuffleNetV2', '--cfg-options',
                       'widen_factor=1.0', '--shape', '224'])
    assert proc.returncode == 0, proc.stderr
    assert 'FLOPs (multiply-adds): 0.145 G (144,907,992)' in proc.stdout, proc.stdout
    assert 'params: 2.279 M (2,278,604)' in proc.stdout, proc.stdout


@pytest.mark.slow
def test_cli_table_backbone_and_json(tmp_path, capsys) -> None:
    cli = _load_cli()
    out = tmp_path / 'res.json'
    assert cli.main(['--table', '--families', 'ShuffleNetV2', '--json', str(out)]) == 0
    stdout = capsys.readouterr().out
    assert '| ShuffleNetV2 1.0x | 24/116/232/464/1024 | 4/8/16/32/32 | 144.9 | 145.0 | 2.28 | 2.28 |' in stdout
    rows = json.loads(out.read_text())
    widths = (0.5, 1.0, 1.5, 2.0)
    assert [r['name'] for r in rows] == ([f'ShuffleNetV2 {w:.1f}x' for w in widths]
                                         + [f'ShuffleNetV2 {w:.1f}x megvii' for w in widths])
    # integer counts against the published figures: within their 1 % rounding / counting conventions
    assert all(abs(r['flops_rel_err']) < 0.01 and abs(r['params_rel_err']) < 0.01 for r in rows)
    assert not list(tmp_path.glob('.*.tmp'))

    assert cli.main(['--backbone', 'ShuffleNetV1', '--cfg-options', 'groups=8', 'widen_factor=0.5',
                     '--classifier-bias', 'no']) == 0
    stdout = capsys.readouterr().out
    assert 'FLOPs (multiply-adds): 0.040 G' in stdout and 'params: 1.0' in stdout

    assert cli.main(['--backbone', 'ShuffleNetV2', '--cfg-options', 'widen_factor=0.5', '--no-classifier',
                     '--shape', '64', '96']) == 0
    stdout = capsys.readouterr().out
    assert 'input shape: (1, 3, 64, 96)' in stdout and 'strides: [8, 16, 32]' in stdout


def test_cli_errors(capsys) -> None:
    cli = _load_cli()
    assert cli.main(['--backbone', 'ShuffleNetV2', '--cfg-options', 'widen_factor=0.3']) == 2
    assert 'widen_factor' in capsys.readouterr().err
    for argv, message in ((['no_such_config.py'], 'no_such_config.py'), ([], 'exactly one'),
                          (['--table', '--backbone', 'ShuffleNetV2'], 'exactly one'),
                          (['--backbone', 'ShuffleNetV2', '--shape', '1', '2', '3'], '--shape')):
        with pytest.raises(SystemExit) as exc:
            cli.main(argv)
        assert exc.value.code == 2
        assert message in capsys.readouterr().err
