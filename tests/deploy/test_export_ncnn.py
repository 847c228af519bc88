"""ncnn export through pnnx (fp16-tolerance parity) and the torch-free ncnn runner."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mmdet  # noqa: F401  (installed by tools/setup.sh: a missing package fails, never skips)
import ncnn  # noqa: F401  (installed by tools/setup.sh: a missing package fails, never skips)
import numpy as np
import pnnx  # noqa: F401  (installed by tools/setup.sh: a missing package fails, never skips)
import pytest
import torch

import deploy_fixtures as fx
from shufflenet_det.deploy.detector import postprocess_meta
from shufflenet_det.deploy.export_common import ExportError
from shufflenet_det.deploy.ncnn_export import export_backbone_ncnn, export_detector_ncnn, run_ncnn
from shufflenet_det.deploy.parity import compare_detections
from shufflenet_det.utils.predict import predict_detections, preprocess_meta

pytestmark = pytest.mark.slow  # tool runs, exports, training: make test-fast leaves these out

RUNNER = fx.REPO / 'tools/deploy/ncnn_runner.py'


def test_backbone_ncnn_parity_and_layers(tmp_path: Path) -> None:
    model = fx.backbone(out_indices=(1, 2, 3, 4))
    report = export_backbone_ncnn(model, tmp_path / 'bb', (1, 3, 96, 128), verbose=False)
    param, weights, meta = tmp_path / 'bb.param', tmp_path / 'bb.bin', tmp_path / 'bb.json'
    assert param.is_file() and weights.is_file() and meta.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ['bb.bin', 'bb.json', 'bb.param']  # pnnx scratch gone
    assert report['parity']['passed'] and json.loads(meta.read_text())['parity']['passed']
    layers = report['layer_types']
    # channel split -> Slice, view/transpose shuffle -> ShuffleChannel, BN folded away
    assert layers.get('ShuffleChannel', 0) >= 15 and layers.get('Slice', 0) >= 12
    assert 'BatchNorm' not in layers
    # independent check of the written files: max |diff| within the export's half-precision tolerance. ncnn builds
    # that store or compute in fp16 (ARM, x86 with F16C / AVX-512 FP16 kernels; eps 9.8e-4) round every layer's
    # values to ~5e-4 relative, a few e-3 of the magnitude S over the network; fp32 kernels stay near 1e-6 of S.
    # Allowed 5e-3 + 5e-3 S per output (>= the export's element rule 5e-3 max(1, S)); a wrong layer moves O(S).
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        ref = [r.numpy()[0] for r in model(x)]
    got = run_ncnn(param, weights, {report['input_blob']: x.numpy()[0]}, report['output_blobs'])
    for r, g in zip(ref, got):
        assert g.shape == r.shape
        assert np.abs(r - g).max() <= 5e-3 + 5e-3 * np.abs(r).max()


def test_failed_ncnn_export_leaves_nothing(tmp_path: Path) -> None:
    model = fx.backbone(widen_factor=0.5, out_indices=(3,))
    with pytest.raises(ExportError, match='parity'):
        export_backbone_ncnn(model, tmp_path / 'bb', (1, 3, 64, 64), atol=-1.0, rtol=0.0, verbose=False)
    with pytest.raises(ValueError, match='batch must be 1'):
        export_backbone_ncnn(model, tmp_path / 'bb', (2, 3, 64, 64), verbose=False)
    assert list(tmp_path.iterdir()) == []


def _run_runner_without_torch(args: list[str]) -> subprocess.CompletedProcess:
    code = ('import sys, runpy; sys.modules["torch"] = None; '  # any "import torch" now raises ImportError
            f'sys.argv = {[str(RUNNER)] + args!r}; '
            f'runpy.run_path({str(RUNNER)!r}, run_name="__main__")')
    return subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300)


def test_detector_ncnn_and_runner_match_mmdet(tmp_path: Path) -> None:
    import mmcv
    detector = fx.spread_retinanet()
    size = (128, 160)
    report = export_detector_ncnn(detector, tmp_path / 'det', fx.images(detector, size, 1), verbose=False)
    assert report['parity']['passed'] and report['with_nms'] is False
    det_checks = [c for c in report['parity']['checks'] if c['kind'] == 'detections']
    assert det_checks and det_checks[0]['num_reference'] > 10
    # the runner, with torch made unimportable, on a generated picture of the export size (no resize)
    ppm, out_json = tmp_path / 'img.ppm', tmp_path / 'dets.json'
    proc = _run_runner_without_torch([str(tmp_path / 'det.param'), '--generate', str(ppm), '--out-json',
                                      str(out_json), '--threads', '1', '--bench', '3', '--warmup', '1'])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'detections' in proc.stdout and 'latency over 3 runs' in proc.stdout
    result = json.loads(out_json.read_text())
    assert result['latency']['runs'] == 3 and result['latency']['median_ms'] > 0
    dets = result['detections']
    assert len(dets) > 10
    # the same picture through mmdet (read by OpenCV, normalised by the detector's preprocessor settings)
    from shufflenet_det.deploy.images import prepare_image
    img = mmcv.imread(str(ppm))
    assert img.shape[:2] == size
    x, scale = prepare_image(img, size, preprocess_meta(detector))
    assert scale == 1.0
    ref = predict_detections(detector, x)[0]
    got = dict(boxes=np.array([d['box'] for d in dets]), scores=np.array([d['score'] for d in dets]),
               labels=np.array([d['label'] for d in dets]))
    # The export's ncnn tolerances: 1 px and 5e-3 of score. ncnn builds that compute in fp16 (eps 9.8e-4: ARM,
    # x86 with AVX-512 FP16) leave a few e-3 relative error in the regression deltas, i.e. up to ~1 px on boxes of
    # this 160 px image, and ~1e-3 on scores; fp32 builds stay far below (the runner also rounds boxes to 0.01 px).
    # A detection at the score / top-k / NMS boundary of test_cfg may be kept on one side only.
    res = compare_detections(ref, got, box_atol=1.0, score_atol=5e-3,
                             test_cfg=postprocess_meta(detector)['test_cfg'])
    assert res['passed'], res


def test_runner_rejects_missing_files(tmp_path: Path) -> None:
    proc = _run_runner_without_torch([str(tmp_path / 'nothing.param')])
    assert proc.returncode == 2 and 'does not exist' in proc.stderr


def test_searched_units_become_slice_and_shufflechannel(tmp_path: Path) -> None:
    """pnnx lowers the searched units to ncnn Slice / Concat / ShuffleChannel (group C/2); ncnn matches PyTorch (SE,
    h-swish, BN folded)."""
    from helpers import randomize_bn
    from shufflenet_det.models.backbones import ShuffleNetV2Plus

    model = randomize_bn(ShuffleNetV2Plus(arch='Small', out_indices=(0, 1, 2, 3, 4)))
    report = export_backbone_ncnn(model, tmp_path / 'v2plus_small', input_shape=(1, 3, 64, 64), verbose=False)
    assert report['parity']['passed']
    layers = report['layer_types']
    assert layers['ShuffleChannel'] == 20 and layers['Slice'] == 16  # one shuffle per unit, one split per stride-1
    assert 'Permute' not in layers and 'BatchNorm' not in layers
    param = (tmp_path / 'v2plus_small.param').read_text()
    assert 'ShuffleChannel' in param and ' 0=18 ' in param  # stage 1: 36 channels -> group 18


def test_pnnx_convert_takes_relative_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pnnx runs in its work folder: paths given relative to the caller's folder still land where they say."""
    from shufflenet_det.deploy.ncnn_export import pnnx_convert
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'work').mkdir()
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU())
    pnnx_convert(model, torch.zeros(1, 3, 8, 8), Path('out.param'), Path('out.bin'), Path('work'))
    assert (tmp_path / 'out.param').stat().st_size > 0 and (tmp_path / 'out.bin').stat().st_size > 0
    assert not (tmp_path / 'work' / 'out.param').exists()
