"""Lite detectors (LiteGFLHead) to ONNX: the raw tensor + numpy decoder and the NMS graph, each equal to mmdet."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mmdet  # noqa: F401  (installed by tools/setup.sh: a missing package fails, never skips)
import numpy as np
import onnxruntime  # noqa: F401  (installed by tools/setup.sh: a missing package fails, never skips)
import pytest
import torch

import deploy_fixtures as fx
from helpers import load_script
from shufflenet_det.deploy.detector import export_wrapper, postprocess_meta
from shufflenet_det.deploy.export_common import unpad_detections
from shufflenet_det.deploy.heads.gfl import GFLExportWrapper
from shufflenet_det.deploy.onnx_export import export_detector_onnx, ort_session
from shufflenet_det.deploy.parity import compare_detections
from shufflenet_det.runtime.postprocess import decode_outputs, level_shapes
from shufflenet_det.utils.predict import predict_detections

pytestmark = pytest.mark.slow  # tool runs, exports, training: make test-fast leaves these out

SIZE = (128, 160)
RUNNER = fx.REPO / 'tools/deploy/onnx_runner.py'


@pytest.fixture(scope='module')
def detector() -> torch.nn.Module:
    return fx.spread_lite()


def test_graph_and_numpy_decoders_reproduce_mmdet(detector) -> None:
    """The NMS graph (run eagerly) and the numpy decoder of the raw tensor both give mmdet's predict_by_feat."""
    high = fx.spread_lite(**{'model.test_cfg.score_thr': 0.3})
    head = detector.bbox_head
    for model, full in ((detector, True), (high, False)):
        nms, raw = export_wrapper(model).eval(), export_wrapper(model, with_nms=False).eval()
        assert isinstance(nms, GFLExportWrapper) and raw.output_names == ['output']
        meta = postprocess_meta(model)
        assert meta['decoder'] == 'gfl_points' and meta['strides'] == [8, 16, 32, 64] and meta['reg_max'] == 7
        for x in fx.images(model, SIZE, 2, seed=1):
            ref = predict_detections(model, x)[0]
            # level 0 has 16 x 20 points x 4 classes = 1280 pairs: the nms_pre (1000) cut is exercised. torch's
            # own counts, with margins no rounding bridges: > 300 detections before the max_per_img cut at score_thr
            # 0.05, 7 and 16 at 0.3
            assert (len(ref['boxes']) == 100) == full and len(ref['boxes']) > 5
            with torch.no_grad():
                graph = unpad_detections(*[t.numpy() for t in nms(x)])[0]
                (flat,) = raw(x)
            n = sum(h * w for h, w in level_shapes(SIZE, head.strides))
            assert tuple(flat.shape) == (1, n, head.num_classes + 4 * (head.reg_max + 1))
            assert float(flat[..., :head.num_classes].min()) >= 0.0  # sigmoid scores
            # Same features (same torch model), another decoding: torch ops in another order in the graph, numpy's
            # float32 softmax / exp (SIMD code that differs between CPUs) in the decoder. Distances reach
            # 7 bins x stride 64 = 448 px, whose float32 ulp is 3e-5: a few ulp of rounding stay below 1e-4 px,
            # scores (one sigmoid each) below 1e-7. Tolerances 1e-3 px / 1e-6 (times max(1, S) of the raw outputs)
            # keep an order of magnitude above that; a wrong bin, stride or point moves boxes by pixels.
            for got in (graph, decode_outputs([flat.numpy()], meta, SIZE)):
                res = compare_detections(ref, got, box_atol=1e-3, score_atol=1e-6, **fx.parity_args(model, x))
                assert res['passed'], res
    with pytest.raises(ValueError, match=r'raw GFL output must be \(\d+, 36\)'):
        decode_outputs([np.zeros((1, 10, 36), np.float32)], postprocess_meta(detector), SIZE)


def test_nms_pre_must_be_positive() -> None:
    model = fx.spread_lite(**{'model.test_cfg.nms_pre': -1})
    with pytest.raises(ValueError, match='nms_pre must be > 0'):
        export_wrapper(model)


def test_raw_export_cli_and_torch_free_runner(tmp_path: Path, detector, capsys) -> None:
    ckpt = tmp_path / 'lite.pth'
    torch.save({'state_dict': detector.state_dict()}, ckpt)
    out = tmp_path / 'lite_raw.onnx'
    small = [f'{k}={json.dumps(v).replace(" ", "")}' for k, v in fx.SMALL_LITE.items()]
    cli = load_script('tools/deploy/export_onnx.py', 'export_onnx_cli')
    rc = cli.main(['--config', str(fx.LITE_CFG), '--checkpoint', str(ckpt), '--cfg-options', *small,
                   '--shape', *map(str, SIZE), '--no-nms', '--simplify', 'onnxslim', '--out', str(out)])
    assert rc == 0, capsys.readouterr().err[-2000:]
    report = json.loads((tmp_path / 'lite_raw.onnx.json').read_text())
    assert report['with_nms'] is False and report['output_names'] == ['output']
    assert report['bn_folded'] and report['postprocess']['decoder'] == 'gfl_points'
    assert report['graph_rewrites']['concat_shuffle_to_interleave'] == 16
    # raw tensor within the CLI's --atol 1e-4 (of max(1, S), S = max|raw output|: ONNX Runtime with folded BN sums
    # in another order, measured below 1e-6 of S on AVX2 / AVX-512), and the decoded detections of each check image
    # equal mmdet's
    tens = [c for c in report['parity']['checks'] if c['kind'] == 'tensors']
    dets = [c for c in report['parity']['checks'] if c['kind'] == 'detections']
    assert tens and all(c['passed'] and c['atol'] == 1e-4 for c in tens)
    assert all(o['max_abs_diff'] <= 1e-4 * max(1.0, o['ref_max_abs']) for c in tens for o in c['outputs'])
    assert dets and all(c['passed'] and c['num_reference'] > 5 for c in dets)
    import onnx
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert 'NonMaxSuppression' not in ops and 'BatchNormalization' not in ops
    # independent check: the written model on a new picture, decoded with the report, against mmdet
    x = fx.images(detector, SIZE, 1, seed=9)[0]
    (flat,) = ort_session(out).run(None, {'input': x.numpy()})
    assert flat.shape == (1, 426, 36)  # 16x20 + 8x10 + 4x5 + 2x3 points, 4 classes + 4 x 8 bins
    # the export's default tolerances (ONNX Runtime vs torch: see parity_args)
    res = compare_detections(predict_detections(detector, x)[0], decode_outputs([flat], report['postprocess'], SIZE),
                             box_atol=1e-2, score_atol=1e-4, **fx.parity_args(detector, x))
    assert res['passed'], res
    # the board runner (torch made unimportable) on the same tensor
    npy, out_json = tmp_path / 'x.npy', tmp_path / 'dets.json'
    np.save(npy, x.numpy())
    code = ('import sys, runpy; sys.modules["torch"] = None; '
            f'sys.argv = {[str(RUNNER), str(out), "--tensor", str(npy), "--out-json", str(out_json), "--bench", "2", "--warmup", "1"]!r}; '  # noqa: E501
            f'runpy.run_path({str(RUNNER)!r}, run_name="__main__")')
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out_json.read_text())
    got = dict(boxes=np.array([d['box'] for d in result['detections']]),
               scores=np.array([d['score'] for d in result['detections']]),
               labels=np.array([d['label'] for d in result['detections']]))
    # the runner writes boxes rounded to 0.01 px (0.005 px of error): box tolerance 0.05 px
    res = compare_detections(predict_detections(detector, x)[0], got, box_atol=0.05, score_atol=1e-4,
                             **fx.parity_args(detector, x))
    assert res['passed'] and result['latency']['runs'] == 2, res
    proc = subprocess.run([sys.executable, str(RUNNER), str(out), '--size', '64', '64'], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2 and 'does not match the static model' in proc.stderr
    proc = subprocess.run([sys.executable, str(RUNNER), str(tmp_path / 'missing.onnx')], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2 and 'does not exist' in proc.stderr and 'Traceback' not in proc.stderr


def test_nms_export_dynamic_batch(tmp_path: Path, detector) -> None:
    out = tmp_path / 'lite_nms.onnx'
    imgs = fx.images(detector, SIZE, 1) + fx.images(detector, (96, 128), 1, seed=7)
    report = export_detector_onnx(detector, out, imgs, dynamic=True, verbose=False)
    assert report['parity']['passed'] and report['output_names'] == ['num_dets', 'boxes', 'scores', 'labels']
    assert all(c['num_reference'] > 5 for c in report['parity']['checks'])
    a, b = fx.images(detector, SIZE, 2, seed=11)
    n, boxes, scores, labels = ort_session(out).run(None, {'input': torch.cat([a, b]).numpy()})
    assert boxes.shape == (2, 100, 4)
    for i, x in enumerate((a, b)):
        got = dict(boxes=boxes[i, :n[i]], scores=scores[i, :n[i]], labels=labels[i, :n[i]])
        res = compare_detections(predict_detections(detector, x)[0], got, 1e-2, 1e-4, **fx.parity_args(detector, x))
        assert res['passed'], res
