"""mmdeploy 1.3.1 exports PP-PicoDet (PicoHead rewriter) whose detections equal mmdet's own predict.

A tiny random PicoDet-S (``fx.spread_pico``, 64x64 inputs): the rewriter run eagerly inside mmdeploy's
``RewriterContext``, the project's tool (``tools/deploy/mmdeploy_deploy.py``, which requires the parity with mmdet's
``predict`` for this head), and mmdeploy's own pipeline from a user's folder outside the repository (its
``tools/deploy.py`` when there is one - ``MMDEPLOY_DEPLOY_PY`` or a source install - otherwise the same steps through
its API, as ``test_mmdeploy_lite.py`` runs them), its ONNX Runtime outputs against mmdet's ``predict``.
"""
from __future__ import annotations

import json
from pathlib import Path

import mmdeploy  # noqa: F401  (installed by tools/setup.sh: a missing package fails, never skips)
import numpy as np
import onnxruntime  # noqa: F401  (installed by tools/setup.sh: a missing package fails, never skips)
import pytest
import torch

import deploy_fixtures as fx
from helpers import load_script
from shufflenet_det.deploy import compat_mmdeploy
from shufflenet_det.deploy.parity import compare_detections
from shufflenet_det.utils.predict import make_data_samples, predict_detections

pytestmark = pytest.mark.slow  # tool runs, exports, subprocesses: make test-fast leaves these out

SIZE = (64, 64)
ORT_DEPLOY_CFG = fx.REPO / 'configs/deploy/detection_onnxruntime_static-256x256.py'


@pytest.fixture(scope='module')
def user_project(tmp_path_factory) -> dict:
    """A user's folder: a 64x64 ONNX Runtime deploy config, a model config with custom_imports, the checkpoint of a
    spread PicoDet-S, two pictures."""
    import mmcv

    from shufflenet_det.deploy.images import synthetic_image
    root = tmp_path_factory.mktemp('pico_project')
    (root / 'deploy_64.py').write_text(f'_base_ = [{str(ORT_DEPLOY_CFG)!r}]\n'
                                       f'onnx_config = dict(input_shape={list(SIZE)!r})\n')
    (root / 'pico_user.py').write_text(
        f'_base_ = [{str(fx.PICO_CFG)!r}]\n'
        "custom_imports = dict(imports=['shufflenet_det'], allow_failed_imports=False)\n")
    detector = fx.spread_pico()
    torch.save({'state_dict': detector.state_dict()}, root / 'pico.pth')
    images = []
    for i in range(2):
        images.append(root / f'img{i}.png')
        mmcv.imwrite(synthetic_image(200, 240, seed=i), str(images[-1]))
    return dict(root=root, deploy_cfg=root / 'deploy_64.py', cfg=root / 'pico_user.py', ckpt=root / 'pico.pth',
                images=images)


def test_rewriter_is_registered_and_reproduces_mmdet() -> None:
    """The rewritten head (eager, inside mmdeploy's RewriterContext) gives mmdet's detections; the per-level point
    top-k (nms_pre) and the per-class nms_top_k are exercised (nms_pre=20, nms_top_k=15 cut the detections)."""
    import shufflenet_det  # noqa: F401
    compat_mmdeploy.apply(import_mmdeploy=True)
    from mmdeploy.codebase import import_codebase
    from mmdeploy.core import FUNCTION_REWRITER, RewriterContext, patch_model
    from mmdeploy.utils import Codebase, load_config
    from mmdeploy.utils.config_utils import get_codebase_external_module

    from shufflenet_det.deploy.detector import deploy_form
    assert compat_mmdeploy.PICO_PREDICT_BY_FEAT in FUNCTION_REWRITER._registry._rewrite_records
    deploy_cfg = load_config(str(ORT_DEPLOY_CFG))[0]
    modules = get_codebase_external_module(deploy_cfg)
    assert {'shufflenet_det.deploy.mmdeploy_lite', 'shufflenet_det.deploy.mmdeploy_pico'} <= set(modules)
    import_codebase(Codebase.MMDET, modules)  # mmdeploy's mmdet rewriters (SingleStageDetector.forward, NMS)
    counts = {}
    for name, cut in (('default', {}), ('cut', dict(nms_pre=20, nms_top_k=15))):
        detector = fx.spread_pico(**{f'model.test_cfg.{k}': v for k, v in cut.items()})
        assert deploy_form(detector).mmdeploy_matches_mmdet and not deploy_form(detector).mmdeploy_ncnn
        patched = patch_model(detector, cfg=deploy_cfg, backend='onnxruntime')
        for x in fx.images(detector, SIZE, 2, seed=1):
            ref = predict_detections(detector, x)[0]
            with RewriterContext(cfg=deploy_cfg, backend='onnxruntime', opset=11), torch.no_grad():
                dets, labels = patched(x, make_data_samples(1, *SIZE), mode='predict')
            dets, labels = dets[0].numpy(), labels[0].numpy()
            assert dets.shape[0] <= detector.bbox_head.test_cfg['max_per_img']
            real = dets[:, 4] > 0
            got = dict(boxes=dets[real, :4], scores=dets[real, 4], labels=labels[real])
            # PicoHead's post-processing in graph form, run eagerly on the same features: a few float32 ulp apart;
            # tolerances 1e-3 px / 1e-6 times max(1, S) of the raw head outputs, boundary cases counted
            res = compare_detections(ref, got, box_atol=1e-3, score_atol=1e-6, **fx.parity_args(detector, x))
            assert res['passed'] and res['num_reference'] > 5, res
            counts.setdefault(name, []).append(res['num_reference'])
    assert all(c < d for c, d in zip(counts['cut'], counts['default'])), counts  # the cuts bite


def test_mmdeploy_deploy_tool_on_picodet(user_project, tmp_path: Path, capsys) -> None:
    """tools/deploy/mmdeploy_deploy.py on the repository's PicoDet config: parity with the rewritten model and,
    required for this head, with mmdet's predict."""
    proj = user_project
    tool = load_script('tools/deploy/mmdeploy_deploy.py', 'mmdeploy_deploy')
    work = tmp_path / 'work'
    rc = tool.main([str(proj['deploy_cfg']), str(fx.PICO_CFG), str(proj['ckpt']), *map(str, proj['images']),
                    '--work-dir', str(work)])
    assert rc == 0, capsys.readouterr().err[-2000:]
    assert sorted(p.name for p in work.iterdir()) == ['end2end.json', 'end2end.onnx']
    report = json.loads((work / 'end2end.json').read_text())
    assert report['backend'] == 'onnxruntime' and report['input_shape'] == list(SIZE)
    assert report['parity']['passed'] and report['mmdet_parity']['passed'] and report['mmdet_parity']['required']
    for check in report['mmdet_parity']['checks']:
        assert check['num_reference'] > 5
    for det in report['detections']:  # in original-image pixels (240 x 200), clipped; 1e-3 px rescale slack
        boxes = np.array(det['boxes'])
        assert len(boxes) > 0 and boxes[:, 2].max() <= 240 + 1e-3 and boxes[:, 3].max() <= 200 + 1e-3


def test_mmdeploy_deploys_user_config_outside_the_repo(user_project, tmp_path: Path) -> None:
    from mmdeploy.apis.utils import build_task_processor
    from mmdeploy.utils import load_config

    from shufflenet_det.deploy.onnx_export import ort_session
    from shufflenet_det.utils import build_detector
    work = tmp_path / 'work'
    work.mkdir()
    proj = user_project
    proc = fx.run_mmdeploy_pipeline(proj['deploy_cfg'], proj['cfg'], proj['ckpt'], proj['images'][0], work,
                                    proj['root'])
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    onnx_path = work / 'end2end.onnx'
    import onnx
    ops = {n.op_type for n in onnx.load(str(onnx_path)).graph.node}
    assert 'NonMaxSuppression' in ops and 'BatchNormalization' not in ops
    deploy_cfg, model_cfg = load_config(str(proj['deploy_cfg']), str(proj['cfg']))
    task = build_task_processor(model_cfg, deploy_cfg, 'cpu')
    reference = build_detector(str(proj['cfg']), str(proj['ckpt']))
    sess = ort_session(onnx_path)
    assert [o.name for o in sess.get_outputs()] == ['dets', 'labels']
    counts = []
    for image in proj['images']:
        _, inputs = task.create_input(str(image), list(SIZE), data_preprocessor=reference.data_preprocessor)
        x = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
        assert tuple(x.shape) == (1, 3, *SIZE)
        dets, labels = sess.run(None, {'input': x.numpy()})
        real = dets[0, :, 4] > 0
        got = dict(boxes=dets[0, real, :4], scores=dets[0, real, 4], labels=labels[0, real])
        # ONNX Runtime vs torch: the export's default tolerances, scaled as the exports scale them
        res = compare_detections(predict_detections(reference, x)[0], got, box_atol=1e-2, score_atol=1e-4,
                                 **fx.parity_args(reference, x))
        assert res['passed'], res
        counts.append(res['num_reference'])
        assert np.all(np.diff(got['scores']) <= 0)  # sorted by score
    assert all(0 < n < 100 for n in counts), counts
