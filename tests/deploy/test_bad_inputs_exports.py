"""Mismatched exports, configs and sizes of the deploy tools end in one clear error, checked before any long work.

The user mistakes of issue 14: an export evaluated with a config of other classes (eval_onnx.py), a deploy config or a
config without a validation set given to eval_onnx.py, an export report copied next to another model (onnx_runner.py,
quantize.py, eval_onnx.py), input sizes a detector cannot run at (onnx_runner.py --tensor on a dynamic export;
export_onnx.py / export_ncnn.py / get_flops.py --shape), options that would be ignored (quantize.py --percentile
without --method percentile, onnx_runner.py --tensor with --image), an --opset out of range, an export_ncnn.py --out
that is a folder, and mmdeploy_deploy.py with its configs swapped, mmdeploy's ncnn backend for a lite or PicoDet
detector or a CUDA device that is not there.

Same pattern as ``test_bad_inputs_new_tools`` (whose work folder fixture ``ws`` and in-process runner this module
reuses): each case runs the tool's ``main`` under its own ``run_main`` and checks a non-zero exit, one ``error:`` line
naming the culprits, no traceback and the work folder unchanged (:func:`helpers.assert_clean_failure`); where the old
failure came after minutes of work, the case also checks that the work never started.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

import deploy_fixtures as fx
from bad_inputs import run_in_process
from helpers import REPO, assert_clean_failure, load_script, tree_snapshot

pytestmark = pytest.mark.slow  # tool runs, exports, training: make test-fast leaves these out

TOOLS = {'eval': 'tools/deploy/eval_onnx.py', 'quantize': 'tools/deploy/quantize.py',
         'runner': 'tools/deploy/onnx_runner.py', 'export_onnx': 'tools/deploy/export_onnx.py',
         'export_ncnn': 'tools/deploy/export_ncnn.py', 'flops': 'tools/analysis_tools/get_flops.py',
         'mmdeploy': 'tools/deploy/mmdeploy_deploy.py'}
DEPLOY_ORT = str(REPO / 'configs/deploy/detection_onnxruntime_static-320x320.py')
DEPLOY_NCNN = str(REPO / 'configs/deploy/detection_ncnn_static-320x320.py')
LITE = str(fx.LITE_CFG)


@pytest.fixture(scope='module')
def wx(ws: Path) -> Path:  # noqa: F811  (the imported fixture)
    """``ws`` (this module's own copy) plus a lite export with NMS, a dynamic raw one, reports swapped between
    models, configs of other classes and a validation set with a broken picture."""
    from shufflenet_det.deploy.onnx_export import export_detector_onnx
    lite = fx.spread_lite()
    export_detector_onnx(lite, ws / 'nms.onnx', fx.images(lite, (64, 64), 1), verbose=False)
    export_detector_onnx(lite, ws / 'dyn.onnx', fx.images(lite, (64, 64), 1), dynamic=True, with_nms=False,
                         verbose=False)
    for name, model, report in (('nms_rawrep', 'nms', 'lite'), ('raw_nmsrep', 'lite', 'nms')):
        shutil.copyfile(ws / f'{model}.onnx', ws / f'{name}.onnx')
        shutil.copyfile(ws / f'{report}.onnx.json', ws / f'{name}.onnx.json')
    classes = json.loads((ws / 'nms.onnx.json').read_text())['classes']
    for name, names in (('reordered', [classes[1], classes[0], *classes[2:]]), ('three', classes[:3])):
        (ws / f'{name}.py').write_text(f"_base_ = {str(ws / 'tiny.py')!r}\nmetainfo = dict(classes={tuple(names)!r})\n"
                                       'val_dataloader = dict(dataset=dict(metainfo=metainfo))\n')
    # the validation set again, its second picture broken
    val = ws / 'valbroken'
    shutil.copytree(ws / 'mini' / 'val2017', val / 'val2017')
    shutil.copytree(ws / 'mini' / 'annotations', val / 'annotations')
    broken = json.loads((val / 'annotations' / 'instances_val2017.json').read_text())['images'][1]['file_name']
    (val / 'val2017' / broken).write_bytes(b'\x89PNG\r\n\x1a\n truncated')
    (ws / 'broken_name.txt').write_text(broken)
    (ws / 'brokenval.py').write_text(f"_base_ = {str(ws / 'tiny.py')!r}\n"
                                     f"val_dataloader = dict(dataset=dict(data_root={str(val) + '/'!r}))\n")
    # runner inputs: tensors of sizes a dynamic lite export cannot take, a pickled object array as an image
    for h, w in ((33, 47), (1, 1)):
        np.save(ws / f't_{h}x{w}.npy', np.zeros((1, 3, h, w), np.float32))
    np.save(ws / 't_64x96.npy', np.random.default_rng(0).standard_normal((1, 3, 64, 96)).astype(np.float32))
    np.save(ws / 'pickled.npy', np.array([{'not': 'an image'}], dtype=object), allow_pickle=True)
    return ws


@pytest.fixture(scope='module')
def tools() -> dict[str, ModuleType]:
    return {name: load_script(path, f'bad_exports_{name}') for name, path in TOOLS.items()}


def _case(case_id: str, tool: str, argv: list[str], names: list[str], **kwargs) -> object:
    """One case: ``tool`` run with ``argv`` (``{ws}``: the work folder) must fail naming every string of ``names``."""
    return pytest.param(tool, argv, names, id=case_id, **kwargs)


def _cases() -> list[object]:
    nms, cfg = '{ws}/nms.onnx', ['--config', '{ws}/tiny.py']
    q_fast = ['--num-calib', '2', '--sensitivity-images', '0', '--bench-runs', '0']
    lite_out = ['--config', LITE, '--num-images', '1']
    image = '{ws}/mini/val2017/000000000001.png'
    md = [image, '--work-dir', '{ws}/md']
    onnx_out = '{ws}/e.onnx'
    return [
        # 1. classes of the export vs the config
        _case('eval-classes-reordered', 'eval', [nms, '--config', '{ws}/reordered.py', '--no-torch'],
              ['nms.onnx.json', 'reordered.py', 'class 0']),
        _case('eval-fewer-classes', 'eval', [nms, '--config', '{ws}/three.py', '--no-torch'],
              ['nms.onnx.json', 'three.py', '4 vs 3 classes', 'class 3']),
        # 2. configs without a validation set
        _case('eval-deploy-config', 'eval', [nms, '--config', DEPLOY_ORT, '--no-torch'],
              ['detection_onnxruntime_static-320x320.py', 'deploy config', 'val_dataloader']),
        _case('eval-config-without-val', 'eval', [nms, '--config', '{ws}/nodataset.py', '--no-torch'],
              ['nodataset.py', 'val_dataloader']),
        # 3. a report next to the wrong model
        _case('runner-nms-model-raw-report', 'runner', ['{ws}/nms_rawrep.onnx'],
              ['nms_rawrep.onnx', 'nms_rawrep.onnx.json', "['num_dets', 'boxes', 'scores', 'labels']"]),
        _case('runner-raw-model-nms-report', 'runner', ['{ws}/raw_nmsrep.onnx'],
              ['raw_nmsrep.onnx', 'raw_nmsrep.onnx.json', "['output']"]),
        _case('quantize-nms-model-raw-report', 'quantize', ['{ws}/nms_rawrep.onnx', *cfg, *q_fast],
              ['nms_rawrep.onnx', 'nms_rawrep.onnx.json', 'does not describe']),
        _case('quantize-raw-model-nms-report', 'quantize', ['{ws}/raw_nmsrep.onnx', *cfg, *q_fast],
              ['raw_nmsrep.onnx', 'raw_nmsrep.onnx.json', 'does not describe']),
        _case('eval-raw-model-nms-report', 'eval', ['{ws}/raw_nmsrep.onnx', *cfg, '--no-torch'],
              ['raw_nmsrep.onnx.json', 'does not describe']),
        # 4. runner inputs
        _case('runner-dynamic-tensor-33x47', 'runner', ['{ws}/dyn.onnx', '--tensor', '{ws}/t_33x47.npy'],
              ['--tensor', 't_33x47.npy', '33x47', 'multiples of 32', '64x64']),
        _case('runner-dynamic-tensor-1x1', 'runner', ['{ws}/dyn.onnx', '--tensor', '{ws}/t_1x1.npy'],
              ['--tensor', 't_1x1.npy', 'multiples of 32']),
        _case('runner-image-pickled-npy', 'runner', ['{ws}/lite.onnx', '--image', '{ws}/pickled.npy'],
              ['--image', 'pickled.npy']),
        _case('runner-tensor-and-image', 'runner', ['{ws}/lite.onnx', '--tensor', '{ws}/t_wrong.npy', '--image',
                                                    image], ['--tensor', '--image', 'not allowed']),
        # 5. quantize: an ignored option, a broken validation picture (checked before calibrating)
        _case('quantize-percentile-with-minmax', 'quantize', ['{ws}/lite.onnx', *cfg, '--percentile', '99.9'],
              ['--percentile', '--method percentile', '--method minmax']),
        _case('quantize-broken-validation-image', 'quantize', ['{ws}/lite.onnx', '--config', '{ws}/brokenval.py',
                                                               *q_fast], ['validation image', 'valbroken']),
        # 6. input sizes
        _case('export-onnx-lite-shape-33x47', 'export_onnx', [*lite_out, '--shape', '33', '47', '--out', onnx_out],
              ['--shape 33 47', 'multiples of 32', '64 64']),
        _case('export-onnx-shape-huge', 'export_onnx', [*lite_out, '--shape', '100000', '64', '--out', onnx_out],
              ['--shape', '4096']),
        _case('export-onnx-opset-10', 'export_onnx', [*lite_out, '--opset', '10', '--out', onnx_out],
              ['--opset 10', '11..20']),
        _case('export-ncnn-lite-shape-33x47', 'export_ncnn', [*lite_out, '--shape', '33', '47', '--out', '{ws}/e'],
              ['--shape 33 47', 'multiples of 32']),
        _case('flops-lite-shape-33x47', 'flops', [LITE, '--deploy', '--shape', '33', '47'],
              ['--shape 33 47', 'multiples of 32']),
        _case('flops-shape-huge', 'flops', [LITE, '--deploy', '--shape', '100000'], ['--shape', '4096']),
        # 7. export_ncnn --out: a folder
        _case('export-ncnn-out-is-a-folder', 'export_ncnn', [*lite_out, '--out', '{ws}/mini'],
              ['--out', 'mini', 'is a folder', 'model']),
        # 8. mmdeploy: configs swapped, ncnn with a lite / PicoDet detector, no CUDA
        _case('mmdeploy-configs-swapped', 'mmdeploy', ['{ws}/tiny.py', DEPLOY_ORT, *md],
              ['swapped', 'deploy_cfg (1st argument)', 'tiny.py', 'model_cfg (2nd argument)']),
        _case('mmdeploy-model-config-twice', 'mmdeploy', ['{ws}/tiny.py', '{ws}/tiny.py', *md],
              ['deploy_cfg (1st argument)', 'not an mmdeploy deploy config']),
        _case('mmdeploy-ncnn-lite', 'mmdeploy', [DEPLOY_NCNN, LITE, *md],
              ['detection_ncnn_static-320x320.py', 'lite-m_shufflenetv2-1x_mini-coco.py', 'ncnn', 'export_ncnn.py']),
        _case('mmdeploy-ncnn-picodet', 'mmdeploy', [DEPLOY_NCNN, str(fx.PICO_CFG), *md],
              ['detection_ncnn_static-320x320.py', 'picodet-s_esnet_mini-coco.py', 'ncnn', 'export_ncnn.py']),
        _case('mmdeploy-device-cuda', 'mmdeploy', [DEPLOY_ORT, '{ws}/tiny.py', *md, '--device', 'cuda'],
              ['--device', 'CUDA is not available'],
              marks=pytest.mark.skipif(torch.cuda.is_available(), reason='CUDA is available here')),
    ]


@pytest.mark.parametrize('tool,argv,names', _cases())
def test_bad_input_fails_cleanly(wx: Path, tools: dict[str, ModuleType], capsys, tool: str, argv: list[str],
                                 names: list[str]) -> None:
    before = tree_snapshot(wx)
    proc = run_in_process(tools[tool], [a.replace('{ws}', str(wx)) for a in argv], capsys)
    assert_clean_failure(proc, names, wx, before, code=2)
    errors = [line for line in proc.stderr.splitlines() if 'error:' in line]
    assert len(errors) == 1, proc.stderr[-2000:]
    if tool == 'quantize':  # refused before the calibration (the first long step) started
        assert 'calibrating' not in proc.stdout, proc.stdout[-2000:]
    if 'brokenval' in ' '.join(argv):  # the broken picture is named
        assert (wx / 'broken_name.txt').read_text() in proc.stderr, proc.stderr[-2000:]


@pytest.mark.parametrize('tool,argv,expect', [
    pytest.param('eval', ['{ws}/nms.onnx', '--config', '{ws}/tiny.py', '--no-torch', '--limit', '1'],
                 'ONNX Runtime bbox mAP', id='eval-matching-classes'),
    pytest.param('runner', ['{ws}/dyn.onnx', '--tensor', '{ws}/t_64x96.npy'], 'detections',
                 id='runner-dynamic-tensor-64x96'),
    pytest.param('runner', ['{ws}/nms.onnx'], 'detections', id='runner-nms-model-own-report'),
    pytest.param('flops', [LITE, '--deploy', '--shape', '64', '96'], 'FLOPs', id='flops-lite-64x96'),
])
def test_fitting_inputs_still_run(wx: Path, tools: dict[str, ModuleType], capsys, tool: str, argv: list[str],
                                  expect: str) -> None:
    """The checks refuse the mistakes only: the matching config, a size of stride multiples and a model with its own
    report still run."""
    proc = run_in_process(tools[tool], [a.replace('{ws}', str(wx)) for a in argv], capsys)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert expect in proc.stdout
