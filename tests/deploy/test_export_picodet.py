"""PP-PicoDet (PicoHead) exports: the raw tensor (ONNX, ncnn; numpy decoding) and the ONNX NMS graph, equal to mmdet."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mmdet  # noqa: F401  (installed by tools/setup.sh: a missing package fails, never skips)
import ncnn  # noqa: F401  (installed by tools/setup.sh: a missing package fails, never skips)
import numpy as np
import onnxruntime  # noqa: F401  (installed by tools/setup.sh: a missing package fails, never skips)
import pnnx  # noqa: F401  (installed by tools/setup.sh: a missing package fails, never skips)
import pytest
import torch

import deploy_fixtures as fx
from helpers import REPO
from shufflenet_det.deploy.detector import export_wrapper, postprocess_meta
from shufflenet_det.deploy.export_common import unpad_detections
from shufflenet_det.deploy.forms import DETECTION_OUTPUTS
from shufflenet_det.deploy.heads.pico import PicoExportWrapper
from shufflenet_det.deploy.ncnn_export import export_detector_ncnn
from shufflenet_det.deploy.onnx_export import export_detector_onnx, ort_session
from shufflenet_det.deploy.parity import compare_detections
from shufflenet_det.runtime.postprocess import decode_outputs, level_shapes
from shufflenet_det.utils.predict import predict_detections

pytestmark = pytest.mark.slow  # exports: make test-fast leaves these out

SIZE = (64, 64)
CFG = fx.PICO_CFG
ONNX_RUNNER = REPO / 'tools/deploy/onnx_runner.py'
NCNN_RUNNER = REPO / 'tools/deploy/ncnn_runner.py'


def run_torch_free(runner: Path, *args: str) -> dict:
    """The board runner with torch made unimportable; its JSON result."""
    out_json = Path(args[0]).with_suffix('.dets.json')
    argv = [str(runner), *args, '--out-json', str(out_json), '--bench', '2', '--warmup', '1']
    code = (f'import sys, runpy; sys.modules["torch"] = None; sys.argv = {argv!r}; '
            f'runpy.run_path({str(runner)!r}, run_name="__main__")')
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out_json.read_text())
    assert result['latency']['runs'] == 2
    return dict(boxes=np.array([d['box'] for d in result['detections']]).reshape(-1, 4),
                scores=np.array([d['score'] for d in result['detections']]),
                labels=np.array([d['label'] for d in result['detections']]))


@pytest.fixture(scope='module')
def detector() -> torch.nn.Module:
    return fx.spread_pico()


def test_graph_and_numpy_decoders_reproduce_mmdet(detector) -> None:
    """The NMS graph (run eagerly) and the raw tensor decoded by the numpy runtime both give mmdet's
    PicoHead.predict_by_feat; the per-level point top-k (nms_pre) and the per-class nms_top_k are exercised (with
    nms_pre=20, nms_top_k=15 the detections of these images drop from 23 / 24 to 16 / 14)."""
    meta = postprocess_meta(detector)
    assert meta['decoder'] == 'pico_points' and meta['cell_offset'] == 0.5 and meta['strides'] == [8, 16, 32, 64]
    assert meta['test_cfg']['nms_top_k'] == 1000
    raw = export_wrapper(detector, with_nms=False).eval()
    assert isinstance(raw, PicoExportWrapper) and raw.output_names == ['output']
    head = detector.bbox_head
    for cut in (dict(), dict(nms_pre=20, nms_top_k=15)):
        model = fx.spread_pico(**{f'model.test_cfg.{k}': v for k, v in cut.items()}) if cut else detector
        meta = postprocess_meta(model)
        for x in fx.images(model, SIZE, 2, seed=1):
            ref = predict_detections(model, x)[0]
            assert len(ref['boxes']) > 5
            with torch.no_grad():
                (flat,) = export_wrapper(model, with_nms=False).eval()(x)
                graph = unpad_detections(*[t.numpy() for t in export_wrapper(model).eval()(x)])[0]
            n = sum(h * w for h, w in level_shapes(SIZE, head.strides))
            assert tuple(flat.shape) == (1, n, 4 + 4 * 8) and n == 64 + 16 + 4 + 1
            # same features, another decoding (graph op order; numpy's float32 softmax / exp): a few ulp of
            # 7 x 64 px (see test_export_lite)
            for got in (graph, decode_outputs([flat.numpy()], meta, SIZE)):
                res = compare_detections(ref, got, box_atol=1e-3, score_atol=1e-6, **fx.parity_args(model, x))
                assert res['passed'], res
    with pytest.raises(ValueError, match=r'raw PicoDet output must be \(85, 36\)'):
        decode_outputs([np.zeros((1, 10, 36), np.float32)], postprocess_meta(detector), SIZE)
    with pytest.raises(ValueError, match='nms_pre must be > 0'):
        export_wrapper(fx.spread_pico(**{'model.test_cfg.nms_pre': -1}))


def test_raw_onnx_export_matches_mmdet(tmp_path: Path, detector) -> None:
    out = tmp_path / 'pico_raw.onnx'
    report = export_detector_onnx(detector, out, fx.images(detector, SIZE, 2), with_nms=False, verbose=False)
    assert report['parity']['passed'] and report['bn_folded'] and report['postprocess']['decoder'] == 'pico_points'
    from shufflenet_det.deploy.quantize import raw_decoder_name
    assert raw_decoder_name(report) == 'pico_points'  # int8 scoring decodes it like the runners
    dets = [c for c in report['parity']['checks'] if c['kind'] == 'detections']
    assert dets and all(c['passed'] and c['num_reference'] > 5 for c in dets)
    import onnx
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert 'BatchNormalization' not in ops and 'HardSwish' in ops
    x = fx.images(detector, SIZE, 1, seed=9)[0]
    (flat,) = ort_session(out).run(None, {'input': x.numpy()})
    res = compare_detections(predict_detections(detector, x)[0], decode_outputs([flat], report['postprocess'], SIZE),
                             box_atol=1e-2, score_atol=1e-4, **fx.parity_args(detector, x))
    assert res['passed'], res
    # the torch-free ONNX runner on the same tensor (boxes written rounded to 0.01 px: box tolerance 0.05 px)
    npy = tmp_path / 'x.npy'
    np.save(npy, x.numpy())
    got = run_torch_free(ONNX_RUNNER, str(out), '--tensor', str(npy))
    res = compare_detections(predict_detections(detector, x)[0], got, box_atol=0.05, score_atol=1e-4,
                             **fx.parity_args(detector, x))
    assert res['passed'] and len(got['boxes']) > 5, res


def test_nms_onnx_export_dynamic_matches_mmdet(tmp_path: Path, detector) -> None:
    out = tmp_path / 'pico_nms.onnx'
    images = fx.images(detector, SIZE, 1) + fx.images(detector, (96, 128), 1, seed=3)
    report = export_detector_onnx(detector, out, images, dynamic=True, with_nms=True, verbose=False)
    assert report['parity']['passed'] and report['with_nms'] and report['output_names'] == list(DETECTION_OUTPUTS)
    dets = [c for c in report['parity']['checks'] if c['kind'] == 'detections']
    assert len(dets) == 2 and all(c['passed'] and c['num_reference'] > 5 for c in dets)
    import onnx
    assert 'NonMaxSuppression' in {n.op_type for n in onnx.load(str(out)).graph.node}


def test_ncnn_export_matches_mmdet(tmp_path: Path, detector) -> None:
    report = export_detector_ncnn(detector, tmp_path / 'pico', fx.images(detector, SIZE, 1), verbose=False)
    assert report['parity']['passed'] and report['with_nms'] is False
    assert sorted(p.name for p in tmp_path.iterdir()) == ['pico.bin', 'pico.json', 'pico.param']
    assert report['postprocess']['decoder'] == 'pico_points' and 'BatchNorm' not in report['layer_types']
    tens = [c for c in report['parity']['checks'] if c['kind'] == 'tensors']
    dets = [c for c in report['parity']['checks'] if c['kind'] == 'detections']
    assert tens[0]['outputs'][0]['shape'] == [85, 36]  # ncnn drops the batch axis
    assert dets and dets[0]['passed'] and dets[0]['num_reference'] > 5
    # the torch-free ncnn runner on a generated picture of the export size, against mmdet on the same picture with
    # the export's ncnn tolerances (fp16 arithmetic; see test_ncnn_lite)
    import mmcv

    from shufflenet_det.deploy.images import prepare_image
    from shufflenet_det.utils.predict import preprocess_meta
    ppm = tmp_path / 'img.ppm'
    got = run_torch_free(NCNN_RUNNER, str(tmp_path / 'pico.param'), '--generate', str(ppm))
    x, scale = prepare_image(mmcv.imread(str(ppm)), SIZE, preprocess_meta(detector))
    assert scale == 1.0 and len(got['boxes']) > 5
    res = compare_detections(predict_detections(detector, x)[0], got, box_atol=1.0, score_atol=5e-3,
                             test_cfg=postprocess_meta(detector)['test_cfg'])
    assert res['passed'], res
