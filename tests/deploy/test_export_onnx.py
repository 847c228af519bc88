"""ONNX export: backbone and detector parity with PyTorch, atomic writing, clear errors."""
from __future__ import annotations

import json
import os
from pathlib import Path

import mmdet  # noqa: F401  (installed by tools/setup.sh: a missing package fails, never skips)
import onnxruntime  # noqa: F401  (installed by tools/setup.sh: a missing package fails, never skips)
import pytest
import torch

import deploy_fixtures as fx
from helpers import assert_close_scaled, load_script
from shufflenet_det.deploy.export_common import ExportError, unpad_detections
from shufflenet_det.deploy.heads.anchor import AnchorExportWrapper
from shufflenet_det.deploy.onnx_export import export_backbone_onnx, export_detector_onnx, ort_session
from shufflenet_det.deploy.parity import compare_detections
from shufflenet_det.utils.predict import predict_detections, preprocess_meta

pytestmark = pytest.mark.slow  # tool runs, exports, training: make test-fast leaves these out


@pytest.fixture(scope='module')
def detector() -> torch.nn.Module:
    return fx.spread_retinanet()


@pytest.fixture(scope='module')
def static_export(detector, tmp_path_factory) -> tuple[Path, dict, list[torch.Tensor]]:
    """The detector exported once at 128x160 (NMS in the graph), with its report and check images."""
    out = tmp_path_factory.mktemp('static') / 'det.onnx'
    imgs = fx.images(detector, (128, 160), 2)
    return out, export_detector_onnx(detector, out, imgs, dynamic=False, verbose=False), imgs


def test_backbone_parity_static_and_dynamic(tmp_path: Path) -> None:
    model = fx.backbone(out_indices=(0, 1, 2, 3, 4))
    out = tmp_path / 'bb.onnx'
    report = export_backbone_onnx(model, out, (1, 3, 96, 128), dynamic=True, simplify='onnxslim', verbose=False)
    assert out.is_file() and report['parity']['passed']
    saved = json.loads((tmp_path / 'bb.onnx.json').read_text())
    assert saved['parity']['passed'] and saved['bn_folded'] and saved['simplified_by'].startswith('onnxslim')
    # two checks: the export size and a second batch/size (dynamic axes really dynamic)
    shapes = [c['input_shape'] for c in saved['parity']['checks']]
    assert shapes == [[1, 3, 96, 128], [2, 3, 128, 192]]
    # ONNX Runtime with folded BN sums in another order than torch: a few float32 eps (1.2e-7) of each feature
    # map's magnitude S per layer, measured below 1e-6 of S (AVX2, AVX-512). 1e-4 of max(1, S) (the export's atol)
    # stays two orders above that; a wrong fold or layer moves features by O(S).
    assert all(o['max_abs_diff'] <= 1e-4 * max(1.0, o['ref_max_abs'])
               for c in saved['parity']['checks'] for o in c['outputs'])
    assert len(saved['parity']['checks'][0]['outputs']) == 5
    # independent re-check of the written file at a third size
    import onnx
    graph_ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert 'BatchNormalization' not in graph_ops
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        ref = model(x)
    got = ort_session(out).run(None, {'input': x.numpy()})
    for r, g in zip(ref, got):
        assert_close_scaled(g, r, atol=1e-4)  # as above: 1e-4 of max(1, S)


def test_static_export_interleaves_the_shuffles(tmp_path: Path) -> None:
    import onnx
    model = fx.backbone(out_indices=(4,))
    out = tmp_path / 'static.onnx'
    report = export_backbone_onnx(model, out, (1, 3, 64, 96), simplify='onnxslim', verbose=False)
    # 16 units, each concat + channel shuffle now one interleave; padded to multiples of 16 channels: the middle of
    # every unit's conv -> depthwise -> conv branch (stage 2: 58 -> 64, 3: 116 -> 128, 4: 232 -> 240; 16 regions)
    # and the 24-channel stem (conv1 -> max pool -> the first unit's two branches: 24 -> 32); exactness is part of
    # the parity check
    assert report['graph_rewrites'] == {'concat_shuffle_to_interleave': 16, 'deinterleave_to_strided_slices': 0,
                                        'channel_padding': 17}
    assert report['parity']['passed']  # exactness of the rewrites: within 1e-4 of max(1, S), as above
    assert all(o['max_abs_diff'] <= 1e-4 * max(1.0, o['ref_max_abs']) for o in report['parity']['checks'][0]['outputs'])
    graph = onnx.load(str(out)).graph
    ops = [n.op_type for n in graph.node]
    assert 'Transpose' not in ops and ops.count('Unsqueeze') == 32
    groups = [a.i for n in graph.node if n.op_type == 'Conv' for a in n.attribute if a.name == 'group' and a.i > 1]
    assert groups.count(64) == 4 and groups.count(128) == 8 and groups.count(240) == 4 and groups.count(32) == 1
    assert not {58, 24} & set(groups)  # (116 and 232: the stride-2 units' branch1 reads the interleaved stage input)
    plain = tmp_path / 'plain.onnx'
    report = export_backbone_onnx(model, plain, (1, 3, 64, 96), fold_bn=False, graph_opt=False, verbose=False)
    assert report['graph_rewrites'] is None
    assert [n.op_type for n in onnx.load(str(plain)).graph.node].count('Transpose') == 16


def test_wrapper_reproduces_mmdet_predict(detector) -> None:
    # the in-graph post-processing, run eagerly, equals mmdet's RetinaHead.predict_by_feat
    wrapper = AnchorExportWrapper(detector).eval()
    for x in fx.images(detector, (128, 160), 2, seed=3):
        ref = predict_detections(detector, x)[0]
        assert len(ref['boxes']) > 10
        with torch.no_grad():
            got = unpad_detections(*[t.numpy() for t in wrapper(x)])[0]
        # the same features, decoded by other torch ops (delta2bbox with exp, clip): a few float32 ulp of the box
        # coordinates (ulp 1.5e-5 at 128-256 px) and scores (6e-8 near 1); tolerances 1e-4 px and 1e-6, times
        # max(1, S) of the raw head outputs, as the exports scale theirs (fx.parity_args)
        res = compare_detections(ref, got, box_atol=1e-4, score_atol=1e-6, **fx.parity_args(detector, x))
        assert res['passed'], res


def test_detector_parity_with_nms_in_graph(static_export) -> None:
    out, report, imgs = static_export
    assert report['parity']['passed'] and out.is_file()
    import onnx
    ops = [n.op_type for n in onnx.load(str(out)).graph.node]
    assert 'NonMaxSuppression' in ops and 'BatchNormalization' not in ops
    checks = json.loads(out.with_name('det.onnx.json').read_text())['parity']['checks']
    assert len(checks) == 2
    for c in checks:
        # ONNX Runtime vs torch: counts may differ only by detections at a score / top-k / NMS boundary (each
        # counted in 'boundary'); matched ones within the export's default tolerances (1e-2 px, 1e-4 of score),
        # scaled by max(1, S) of the raw head outputs
        assert c['passed'] and c['num_reference'] > 10 and c['labels_equal']
        moved = sum(c['boundary'].values())
        assert abs(c['num_reference'] - c['num_actual']) <= moved
        assert c['box_atol'] == 1e-2 and c['score_atol'] == 1e-4
        assert c['max_box_diff'] <= c['box_tol'] and c['max_score_diff'] <= c['score_tol']
    # outputs: num_dets, boxes, scores, labels padded to max_per_img
    sess = ort_session(out)
    assert [o.name for o in sess.get_outputs()] == ['num_dets', 'boxes', 'scores', 'labels']
    n, boxes, scores, labels = sess.run(None, {'input': imgs[0].numpy()})
    assert boxes.shape == (1, 100, 4) and (labels[0, int(n[0]):] == -1).all()


def test_coco_map_of_the_export_equals_torch(tmp_path: Path, detector, static_export) -> None:
    """evaluate_onnx's COCO plumbing (labels -> category ids, xyxy -> xywh, undoing the resize) on a tiny set whose
    ground truth is every PyTorch detection: torch scores mAP 1 by construction, and so does the export wherever
    its detections match torch's - a comparison that holds on any CPU, unlike equal mAPs of two float models, which
    a near-tie of a true and a false positive's scores can reorder."""
    import mmcv

    from shufflenet_det.deploy.evaluate import evaluate_onnx
    from shufflenet_det.deploy.images import prepare_image, read_image, synthetic_image
    size, pre = (128, 160), preprocess_meta(detector)
    classes = ['a', 'b', 'c', 'd']
    sess = ort_session(static_export[0])
    images, anns, counts, moved = [], [], [0, 0], 0
    for i in range(3):
        img = synthetic_image(100, 150, seed=20 + i)  # resized by 1.28 into 128x160 (keep ratio)
        mmcv.imwrite(img, str(tmp_path / f'{i}.png'))
        images.append(dict(id=i + 1, file_name=f'{i}.png', height=100, width=150))
        x, scale = prepare_image(read_image(tmp_path / f'{i}.png'), size, pre)  # as evaluate_onnx reads it
        ref = predict_detections(detector, x)[0]
        for box, label in zip(ref['boxes'] / scale, ref['labels']):  # every detection is a ground-truth box
            x1, y1, x2, y2 = box.tolist()
            anns.append(dict(id=len(anns) + 1, image_id=i + 1, category_id=int(label) + 1, iscrowd=0,
                             bbox=[x1, y1, x2 - x1, y2 - y1], area=(x2 - x1) * (y2 - y1)))
        # the export's detections of the same input: matched to torch's, or unmatched at a score / top-k / NMS
        # boundary only (rounding of another runtime on another CPU may move a detection across one)
        got = unpad_detections(*sess.run(None, {'input': x.numpy()}))[0]
        res = compare_detections(ref, got, 1e-2, 1e-4, **fx.parity_args(detector, x))
        assert res['passed'], res
        counts[0] += res['num_reference']
        counts[1] += res['num_actual']
        moved += sum(res['boundary'].values())
    assert len(anns) > 10
    ann_file = tmp_path / 'gt.json'
    ann_file.write_text(json.dumps(dict(images=images, annotations=anns, categories=[
        dict(id=k + 1, name=n) for k, n in enumerate(classes)])))
    result = evaluate_onnx(static_export[0], ann_file, tmp_path, classes, size, pre, reference=detector)
    assert result['num_images'] == 3 and [result['torch_detections'], result['onnx_detections']] == counts
    # every torch detection is its own ground truth (IoU 1): no false positive, no missed box
    assert result['torch']['bbox_mAP'] == pytest.approx(1.0)
    if moved == 0:
        # every export detection matched a torch one within <= 1e-2 px x max(1, S) (IoU above 0.95, the highest
        # COCO threshold, for boxes over a few pixels) and none is extra: mAP 1 as well
        assert result['onnx']['bbox_mAP'] == pytest.approx(1.0) and result['mAP_diff'] == pytest.approx(0.0)
    else:
        # a boundary detection is one missed ground truth or one extra (low-ranked) false positive per case
        assert result['onnx']['bbox_mAP'] > 0.5
    assert sorted(p.name for p in static_export[0].parent.iterdir()) == ['det.onnx', 'det.onnx.json']


def test_detector_dynamic_size_and_batch(tmp_path: Path, detector) -> None:
    out = tmp_path / 'det_dyn.onnx'
    imgs = fx.images(detector, (128, 160), 1) + fx.images(detector, (96, 128), 1, seed=7)
    report = export_detector_onnx(detector, out, imgs, dynamic=True, opset=13, verbose=False)
    assert report['parity']['passed'] and report['opset'] == 13
    # a batch of two different images in one call gives each image its own detections
    a, b = fx.images(detector, (128, 160), 2, seed=11)
    n, boxes, scores, labels = ort_session(out).run(None, {'input': torch.cat([a, b]).numpy()})
    for i, x in enumerate((a, b)):
        ref = predict_detections(detector, x)[0]
        got = dict(boxes=boxes[i, :n[i]], scores=scores[i, :n[i]], labels=labels[i, :n[i]])
        assert compare_detections(ref, got, 1e-2, 1e-4, **fx.parity_args(detector, x))['passed']


def _listing(path: Path) -> list[str]:
    return sorted(os.listdir(path))


def test_failed_exports_leave_nothing(tmp_path: Path) -> None:
    model = fx.backbone(widen_factor=0.5, out_indices=(3,))
    with pytest.raises(ValueError, match='opset'):
        export_backbone_onnx(model, tmp_path / 'a.onnx', (1, 3, 64, 64), opset=99, verbose=False)
    with pytest.raises(ValueError, match='input shape'):
        export_backbone_onnx(model, tmp_path / 'a.onnx', (1, 4, 64, 64), verbose=False)
    with pytest.raises(ValueError, match='simplify'):
        export_backbone_onnx(model, tmp_path / 'a.onnx', (1, 3, 64, 64), simplify='magic', verbose=False)
    # parity failure (impossible tolerance): ExportError, no model, no report, no temp file
    with pytest.raises(ExportError, match='parity'):
        export_backbone_onnx(model, tmp_path / 'a.onnx', (1, 3, 64, 64), atol=-1.0, verbose=False)
    assert _listing(tmp_path) == []
    # a destination that cannot be created (its parent is a file) and a folder that refuses the second file
    blocker = tmp_path / 'file'
    blocker.write_text('x')
    with pytest.raises(ValueError, match='cannot create folder'):
        export_backbone_onnx(model, blocker / 'a.onnx', (1, 3, 64, 64), verbose=False)
    ro = tmp_path / 'ro'
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if not os.access(ro, os.W_OK):  # not root: a read-only folder is refused up front
            with pytest.raises(ValueError, match='not writable'):
                export_backbone_onnx(model, ro / 'a.onnx', (1, 3, 64, 64), verbose=False)
            assert _listing(ro) == []
    finally:
        ro.chmod(0o700)
    blocker.unlink()
    ro.rmdir()
    # an existing model is left untouched by a failed re-export
    good = tmp_path / 'good.onnx'
    export_backbone_onnx(model, good, (1, 3, 64, 64), verbose=False)
    before = good.read_bytes()
    with pytest.raises(ExportError):
        export_backbone_onnx(model, good, (1, 3, 64, 64), atol=-1.0, verbose=False)
    assert good.read_bytes() == before
    assert _listing(tmp_path) == ['good.onnx', 'good.onnx.json']


def test_atomic_outputs_cleans_up_when_a_later_file_fails(tmp_path: Path, monkeypatch) -> None:
    import tempfile

    from shufflenet_det.utils.io import atomic_outputs
    real = tempfile.mkstemp
    calls = []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise PermissionError('read-only folder')
        return real(*args, **kwargs)
    monkeypatch.setattr(tempfile, 'mkstemp', flaky)
    with pytest.raises(ValueError, match='cannot write'):
        with atomic_outputs([tmp_path / 'a.param', tmp_path / 'a.bin']):
            pass
    assert _listing(tmp_path) == []
    monkeypatch.setattr(tempfile, 'mkstemp', real)
    with pytest.raises(RuntimeError, match='boom'):
        with atomic_outputs([tmp_path / 'a.param', tmp_path / 'a.bin']) as (p, b):
            p.write_text('param')
            raise RuntimeError('boom')
    assert _listing(tmp_path) == []


def test_cli_backbone(tmp_path: Path, capsys) -> None:
    cli = load_script('tools/deploy/export_onnx.py', 'export_onnx_cli')
    out = tmp_path / 'cli.onnx'
    rc = cli.main(['--backbone', 'ShuffleNetV2', '--backbone-args', '{"widen_factor": 0.5, "out_indices": [3]}',
                   '--shape', '64', '64', '--out', str(out)])
    assert rc == 0 and out.is_file() and json.loads((tmp_path / 'cli.onnx.json').read_text())['parity']['passed']
    assert 'parity PASSED' in capsys.readouterr().out
    rc = cli.run_main(cli.main, ['--backbone', 'ShuffleNetV2', '--shape', '64', '64', '--opset', '5', '--out',
                                 str(tmp_path / 'bad.onnx')])  # refused before the model is built
    assert rc == 2 and not (tmp_path / 'bad.onnx').exists()
    assert '--opset 5 is not supported: give 11..20' in capsys.readouterr().err
