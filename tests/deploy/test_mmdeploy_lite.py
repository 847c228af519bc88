"""mmdeploy 1.3.1 exports a lite detector (LiteGFLHead rewriter) whose detections equal mmdet's own predict.

The end-to-end test is a user's project outside the repository: a model config that only imports shufflenet_det
through ``custom_imports``, deployed in a child process with mmdeploy's pipeline (its ``tools/deploy.py`` when
mmdeploy is a source install that has it - the PyPI wheel ships no ``tools/`` and 1.3.1 has no source archive on
PyPI - otherwise the same steps through mmdeploy's API: ``torch2onnx`` in a spawned process, as deploy.py runs it),
then the ONNX Runtime outputs are compared with mmdet's ``predict`` of the same weights on the same input tensors.
"""
from __future__ import annotations

from pathlib import Path

import mmdeploy  # noqa: F401  (installed by tools/setup.sh: a missing package fails, never skips)
import numpy as np
import onnxruntime  # noqa: F401  (installed by tools/setup.sh: a missing package fails, never skips)
import pytest
import torch

import deploy_fixtures as fx
from shufflenet_det.deploy import compat_mmdeploy
from shufflenet_det.deploy.parity import compare_detections
from shufflenet_det.utils.predict import make_data_samples, predict_detections

pytestmark = pytest.mark.slow  # tool runs, exports, training: make test-fast leaves these out

ORT_DEPLOY_CFG = fx.REPO / 'configs/deploy/detection_onnxruntime_static-256x256.py'

@pytest.fixture(scope='module')
def user_project(tmp_path_factory) -> dict:
    """A user's folder: config with custom_imports, checkpoint of a spread lite detector, two pictures."""
    import mmcv

    from shufflenet_det.deploy.images import synthetic_image
    root = tmp_path_factory.mktemp('user_project')
    (root / 'lite_user.py').write_text(
        f"_base_ = [{str(fx.LITE_CFG)!r}]\n"
        "custom_imports = dict(imports=['shufflenet_det'], allow_failed_imports=False)\n"
        "# the small test network; score_thr 0.3: fewer than max_per_img detections, padded outputs\n"
        "model = dict(test_cfg=dict(score_thr=0.3), backbone=dict(widen_factor=0.5),\n"
        "             neck=dict(in_channels=[48, 96, 192], out_channels=32),\n"
        "             bbox_head=dict(in_channels=32, feat_channels=32),\n"
        "             aux_head=dict(in_channels=64, feat_channels=32))\n")
    detector = fx.spread_lite(**{'model.test_cfg.score_thr': 0.3})
    torch.save({'state_dict': detector.state_dict()}, root / 'lite.pth')
    images = []
    for i in range(2):
        images.append(root / f'img{i}.png')
        mmcv.imwrite(synthetic_image(200, 240, seed=i), str(images[-1]))
    return dict(root=root, cfg=root / 'lite_user.py', ckpt=root / 'lite.pth', images=images, detector=detector)


def test_rewriter_is_registered_and_reproduces_mmdet() -> None:
    """The rewritten head (eager, inside mmdeploy's RewriterContext) gives mmdet's detections."""
    import shufflenet_det  # noqa: F401
    compat_mmdeploy.apply(import_mmdeploy=True)
    from mmdeploy.codebase import import_codebase
    from mmdeploy.core import FUNCTION_REWRITER, RewriterContext, patch_model
    from mmdeploy.utils import Codebase, load_config
    from mmdeploy.utils.config_utils import get_codebase_external_module
    assert compat_mmdeploy.LITE_PREDICT_BY_FEAT in FUNCTION_REWRITER._registry._rewrite_records
    deploy_cfg = load_config(str(ORT_DEPLOY_CFG))[0]
    modules = get_codebase_external_module(deploy_cfg)
    assert 'shufflenet_det.deploy.mmdeploy_lite' in modules
    import_codebase(Codebase.MMDET, modules)  # mmdeploy's mmdet rewriters (SingleStageDetector.forward, NMS)
    for thr in (0.05, 0.3):
        detector = fx.spread_lite(**{'model.test_cfg.score_thr': thr})
        patched = patch_model(detector, cfg=deploy_cfg, backend='onnxruntime')
        for x in fx.images(detector, (128, 160), 1, seed=4):
            ref = predict_detections(detector, x)[0]
            with RewriterContext(cfg=deploy_cfg, backend='onnxruntime', opset=11), torch.no_grad():
                dets, labels = patched(x, make_data_samples(1, 128, 160), mode='predict')
            dets, labels = dets[0].numpy(), labels[0].numpy()
            assert dets.shape[0] <= detector.bbox_head.test_cfg['max_per_img']
            real = dets[:, 4] > 0
            got = dict(boxes=dets[real, :4], scores=dets[real, 4], labels=labels[real])
            # the rewriter is mmdet's post-processing in graph form, run eagerly on the same features: a few float32
            # ulp of the box coordinates (distances up to 448 px, ulp 3e-5) and of the scores (<= 1, ulp 6e-8);
            # tolerances 1e-3 px / 1e-6 times max(1, S) of the raw head outputs (fx.parity_args), and detections at
            # a score / top-k / NMS boundary may be kept on one side only
            res = compare_detections(ref, got, box_atol=1e-3, score_atol=1e-6, **fx.parity_args(detector, x))
            assert res['passed'] and res['num_reference'] > 5, res
            # the max_per_img cut and padded outputs: torch's own count, far from 100 either way (314 and 22
            # detections before the cut), so no rounding of another CPU moves it across
            assert (thr == 0.05) == (res['num_reference'] == 100)


def test_mmdeploy_deploys_user_config_outside_the_repo(user_project, tmp_path: Path) -> None:
    from mmdeploy.apis.utils import build_task_processor
    from mmdeploy.utils import load_config

    from shufflenet_det.deploy.onnx_export import ort_session
    from shufflenet_det.utils import build_detector
    work = tmp_path / 'work'
    work.mkdir()
    proj = user_project
    proc = fx.run_mmdeploy_pipeline(ORT_DEPLOY_CFG, proj['cfg'], proj['ckpt'], proj['images'][0], work,
                                    proj['root'])
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    onnx_path = work / 'end2end.onnx'
    assert onnx_path.is_file()
    import onnx
    ops = {n.op_type for n in onnx.load(str(onnx_path)).graph.node}
    assert 'NonMaxSuppression' in ops and 'BatchNormalization' not in ops
    # the exported graph on mmdeploy's own input pipeline, against mmdet's predict of the same weights
    deploy_cfg, model_cfg = load_config(str(ORT_DEPLOY_CFG), str(proj['cfg']))
    task = build_task_processor(model_cfg, deploy_cfg, 'cpu')
    reference = build_detector(str(proj['cfg']), str(proj['ckpt']))
    sess = ort_session(onnx_path)
    assert [o.name for o in sess.get_outputs()] == ['dets', 'labels']
    counts = []
    for image in proj['images']:
        _, inputs = task.create_input(str(image), [256, 256], data_preprocessor=reference.data_preprocessor)
        x = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
        assert tuple(x.shape) == (1, 3, 256, 256)
        dets, labels = sess.run(None, {'input': x.numpy()})
        real = dets[0, :, 4] > 0
        got = dict(boxes=dets[0, real, :4], scores=dets[0, real, 4], labels=labels[0, real])
        # ONNX Runtime vs torch: the export's default tolerances, scaled as the exports scale them
        res = compare_detections(predict_detections(reference, x)[0], got, box_atol=1e-2, score_atol=1e-4,
                                 **fx.parity_args(reference, x))
        assert res['passed'], res
        counts.append(res['num_reference'])
        assert np.all(np.diff(got['scores']) <= 0)  # sorted by score (a sort is exact)
    assert all(0 < n < 100 for n in counts), counts
