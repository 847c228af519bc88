"""Lite detectors to ncnn (pnnx, the raw GFL tensor, fp16 tolerance) and the torch-free board runner's decoding."""
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

import deploy_fixtures as fx
from shufflenet_det.deploy.detector import postprocess_meta
from shufflenet_det.deploy.ncnn_export import export_detector_ncnn
from shufflenet_det.deploy.parity import compare_detections
from shufflenet_det.utils.predict import predict_detections, preprocess_meta

pytestmark = pytest.mark.slow  # tool runs, exports, training: make test-fast leaves these out

RUNNER = fx.REPO / 'tools/deploy/ncnn_runner.py'
SIZE = (128, 160)


def test_lite_ncnn_export_and_runner_match_mmdet(tmp_path: Path) -> None:
    import mmcv
    detector = fx.spread_lite()
    report = export_detector_ncnn(detector, tmp_path / 'lite', fx.images(detector, SIZE, 1), verbose=False)
    assert report['parity']['passed'] and report['with_nms'] is False
    assert sorted(p.name for p in tmp_path.iterdir()) == ['lite.bin', 'lite.json', 'lite.param']
    assert len(report['output_blobs']) == 1 and report['postprocess']['decoder'] == 'gfl_points'
    layers = report['layer_types']
    # GhostPAN's bilinear x2 upsampling -> Interp, ShuffleNet's shuffles -> ShuffleChannel, BN folded away
    assert layers.get('Interp') == 2 and layers.get('ShuffleChannel', 0) >= 13 and 'BatchNorm' not in layers
    tens = [c for c in report['parity']['checks'] if c['kind'] == 'tensors']
    dets = [c for c in report['parity']['checks'] if c['kind'] == 'detections']
    assert tens[0]['outputs'][0]['shape'] == [426, 36]  # ncnn drops the batch axis: (N, C + 4 (R + 1))
    assert dets and dets[0]['passed'] and dets[0]['num_reference'] > 10
    # the board runner with torch made unimportable, on a generated picture of the export size (no resize)
    ppm, out_json = tmp_path / 'img.ppm', tmp_path / 'dets.json'
    code = ('import sys, runpy; sys.modules["torch"] = None; '
            f'sys.argv = {[str(RUNNER), str(tmp_path / "lite.param"), "--generate", str(ppm), "--out-json", str(out_json), "--bench", "2", "--warmup", "1"]!r}; '  # noqa: E501
            f'runpy.run_path({str(RUNNER)!r}, run_name="__main__")')
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out_json.read_text())
    assert result['latency']['runs'] == 2 and len(result['detections']) > 10
    from shufflenet_det.deploy.images import prepare_image
    x, scale = prepare_image(mmcv.imread(str(ppm)), SIZE, preprocess_meta(detector))
    assert scale == 1.0
    got = dict(boxes=np.array([d['box'] for d in result['detections']]),
               scores=np.array([d['score'] for d in result['detections']]),
               labels=np.array([d['label'] for d in result['detections']]))
    # the export's ncnn tolerances (see test_export_ncnn: fp16 ncnn builds, eps 9.8e-4, move boxes of this 160 px
    # image by up to ~1 px); detections at a score / top-k / NMS boundary may be kept on one side only
    res = compare_detections(predict_detections(detector, x)[0], got, box_atol=1.0, score_atol=5e-3,
                             test_cfg=postprocess_meta(detector)['test_cfg'])
    assert res['passed'], res
