"""mmdeploy 1.3.1 on torch 2.13: compat fixes, deploy configs, and a real deploy + ONNX Runtime run."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import mmdeploy  # noqa: F401  (installed by tools/setup.sh: a missing package fails, never skips)
import numpy as np
import onnxruntime  # noqa: F401  (installed by tools/setup.sh: a missing package fails, never skips)
import pytest
import torch

import deploy_fixtures as fx
from helpers import load_script
from shufflenet_det.deploy import compat_mmdeploy  # noqa: E402

pytestmark = pytest.mark.slow  # tool runs, exports, training: make test-fast leaves these out

DEPLOY_CFGS = sorted((fx.REPO / 'configs/deploy').glob('detection_*.py'))


@pytest.fixture(scope='module', autouse=True)
def _apply() -> None:
    import shufflenet_det  # noqa: F401
    compat_mmdeploy.apply(import_mmdeploy=True)


def test_fixes_are_applied_and_idempotent() -> None:
    import torch.onnx.symbolic_opset9 as opset9
    from mmdeploy.core import FUNCTION_REWRITER
    assert compat_mmdeploy.wrapped_callable(torch.onnx.export)
    assert callable(opset9._cast_Long)
    assert compat_mmdeploy._INTERNAL_MODEL_TO_GRAPH in FUNCTION_REWRITER._registry._rewrite_records
    assert compat_mmdeploy.apply() == dict(onnx_export_dynamo_false=False, cast_long=False,
                                           model_to_graph_rewriter=False, lite_head_rewriter=False,
                                           pico_head_rewriter=False)
    assert compat_mmdeploy.LITE_PREDICT_BY_FEAT in FUNCTION_REWRITER._registry._rewrite_records
    assert compat_mmdeploy.PICO_PREDICT_BY_FEAT in FUNCTION_REWRITER._registry._rewrite_records


class _CastLong(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):  # noqa: D102
        return x.long()

    @staticmethod
    def symbolic(g, x):  # noqa: D102
        import torch.onnx.symbolic_opset9 as opset9
        return opset9._cast_Long(g, x, False)  # what mmdeploy's roi_align symbolic calls


class _Tiny(torch.nn.Module):
    def forward(self, x):  # noqa: D102
        return _CastLong.apply(x * 2)


def test_cast_long_stand_in_exports_a_cast(tmp_path: Path) -> None:
    import onnx
    import onnxruntime as ort
    path = tmp_path / 'cast.onnx'
    torch.onnx.export(_Tiny(), (torch.tensor([1.4, 2.6]),), str(path), dynamo=False, opset_version=11)
    nodes = onnx.load(str(path)).graph.node
    cast = [n for n in nodes if n.op_type == 'Cast']
    assert cast and cast[0].attribute[0].i == onnx.TensorProto.INT64
    sess = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    out = sess.run(None, {sess.get_inputs()[0].name: np.array([1.4, 2.6], np.float32)})[0]
    assert out.dtype == np.int64 and out.tolist() == [2, 5]


def test_export_from_mmdeploy_modules_uses_the_torchscript_exporter(tmp_path: Path) -> None:
    path = tmp_path / 'm.onnx'
    namespace = {'__name__': 'mmdeploy.apis.onnx.fake', 'torch': torch}
    exec('def run(model, x, path):\n    torch.onnx.export(model, (x,), path, opset_version=11)\n', namespace)
    namespace['run'](torch.nn.Conv2d(3, 4, 3), torch.randn(1, 3, 8, 8), str(path))
    assert path.is_file() and path.stat().st_size > 0
    if importlib.util.find_spec('onnxscript') is None:
        # any other caller keeps torch's default (the dynamo exporter, which needs onnxscript)
        with pytest.raises(ImportError):
            torch.onnx.export(torch.nn.Conv2d(3, 4, 3), (torch.randn(1, 3, 8, 8),), str(tmp_path / 'd.onnx'))


@pytest.mark.parametrize('cfg_path', DEPLOY_CFGS, ids=[p.stem for p in DEPLOY_CFGS])
def test_deploy_configs_follow_the_mmdeploy_schema(cfg_path: Path) -> None:
    from mmdeploy.utils import (
        get_backend,
        get_codebase,
        get_dynamic_axes,
        get_input_shape,
        get_ir_config,
        get_task_type,
        load_config,
    )
    cfg = load_config(str(cfg_path))[0]
    assert get_codebase(cfg).value == 'mmdet' and get_task_type(cfg).value == 'ObjectDetection'
    assert get_ir_config(cfg)['type'] == 'onnx' and get_ir_config(cfg)['opset_version'] >= 11
    backend = get_backend(cfg).value
    assert backend in cfg_path.stem
    shape = get_input_shape(cfg)
    if 'dynamic' in cfg_path.stem:
        assert shape is None and get_dynamic_axes(cfg)['input'] == {0: 'batch', 2: 'height', 3: 'width'}
    else:
        size = int(cfg_path.stem.split('_')[-1].split('x')[0].split('-')[-1])
        assert shape == [size, size]
    if backend == 'tensorrt':
        shapes = cfg.backend_config.model_inputs[0].input_shapes.input
        assert shapes.min_shape[2] <= shapes.opt_shape[2] <= shapes.max_shape[2]
        if shape is not None:
            assert shapes.min_shape == shapes.max_shape == [1, 3, *shape]
    post = cfg.codebase_config.post_processing
    assert 0 < post.iou_threshold < 1 and post.keep_top_k == 100


def test_deploy_mini_retinanet_and_run_in_onnxruntime(tmp_path: Path, capsys) -> None:
    import mmcv
    detector = fx.spread_retinanet()
    ckpt = tmp_path / 'tiny.pth'
    torch.save({'state_dict': detector.state_dict()}, ckpt)
    from shufflenet_det.deploy.images import synthetic_image
    images = []
    for i in range(2):
        images.append(tmp_path / f'img{i}.png')
        mmcv.imwrite(synthetic_image(200, 240, seed=i), str(images[-1]))
    tool = load_script('tools/deploy/mmdeploy_deploy.py', 'mmdeploy_deploy')
    work = tmp_path / 'work'
    rc = tool.main([str(fx.REPO / 'configs/deploy/detection_onnxruntime_static-256x256.py'), str(fx.MINI_CFG),
                    str(ckpt), *map(str, images), '--work-dir', str(work)])
    assert rc == 0, capsys.readouterr().err[-2000:]
    assert sorted(p.name for p in work.iterdir()) == ['end2end.json', 'end2end.onnx']  # scratch removed
    report = json.loads((work / 'end2end.json').read_text())
    assert report['backend'] == 'onnxruntime' and report['parity']['passed']
    for check in report['parity']['checks']:
        # ONNX Runtime vs torch: counts may differ only by detections at a score / top-k / NMS boundary (counted in
        # 'boundary'); matched ones within the tool's defaults 1e-2 px / 1e-4, scaled by max(1, S) of the raw head
        # outputs (the rounding of another summation order follows S)
        assert check['passed'] and check['num_reference'] > 10
        assert abs(check['num_reference'] - check['num_actual']) <= sum(check['boundary'].values())
        assert check['box_atol'] == 1e-2 and check['score_atol'] == 1e-4
        assert check['max_box_diff'] <= check['box_tol'] and check['max_score_diff'] <= check['score_tol']
    # mmdeploy's ONNX Runtime backend model gives detections in original-image pixels
    for det in report['detections']:
        boxes = np.array(det['boxes'])
        # clipped to the image; 1e-3 px of slack for the float32 rescale to original pixels (ulp 1.5e-5 at 240 px)
        assert len(boxes) > 0 and boxes[:, 2].max() <= 240 + 1e-3 and boxes[:, 3].max() <= 200 + 1e-3
        # the backend model's full path (its own preprocessing) scores like the raw graph run above: the same
        # graph on the same preprocessed input (equal up to thread scheduling); a score <= 1 within the parity
        # score tolerance 1e-4
        assert abs(max(det['scores']) - det['raw_max_score']) < 1e-4
    import onnx
    ops = {n.op_type for n in onnx.load(str(work / 'end2end.onnx')).graph.node}
    assert 'NonMaxSuppression' in ops and 'BatchNormalization' not in ops


def test_package_import_applies_fixes_without_importing_mmdeploy() -> None:
    import subprocess
    import sys
    # `import shufflenet_det` (compat.apply) installs the two cheap fixes without importing mmdeploy
    code = ('import sys, torch; import shufflenet_det; from shufflenet_det.deploy import compat_mmdeploy; '
            'from torch.onnx import symbolic_opset9; '
            'assert "mmdeploy" not in sys.modules, "mmdeploy imported"; '
            'assert compat_mmdeploy.is_applied(); '
            'assert compat_mmdeploy.wrapped_callable(torch.onnx.export); '
            'assert hasattr(symbolic_opset9, "_cast_Long"); '
            'assert compat_mmdeploy.apply() == dict(onnx_export_dynamo_false=False, cast_long=False); print("ok")')
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300,
                          cwd=str(fx.REPO))
    assert proc.returncode == 0 and proc.stdout.strip().endswith('ok'), proc.stderr[-2000:]
