"""The torch-free runtime (shufflenet_det/runtime/): the ncnn and ONNX Runtime runners with torch unimportable, and
the folder copied alone (as to a board) run as ``python -m runtime``.

The models are exported here, in the test process (small lite detector and backbone, 64x64); the runners run in
child processes that cannot import torch, torchvision, mmcv, mmengine or mmdet.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import deploy_fixtures as fx

pytestmark = pytest.mark.slow  # tool runs, exports, training: make test-fast leaves these out

SIZE = (64, 64)
#: What a board does not have.
BLOCKED = ('torch', 'torchvision', 'mmcv', 'mmengine', 'mmdet')


@pytest.fixture(scope='module')
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A small lite detector exported to ncnn and to raw ONNX, a backbone exported to ncnn, and a test picture."""
    from shufflenet_det.deploy.ncnn_export import export_backbone_ncnn, export_detector_ncnn
    from shufflenet_det.deploy.onnx_export import export_detector_onnx
    from shufflenet_det.runtime.images import make_test_picture, write_ppm
    root = tmp_path_factory.mktemp('runtime_exports')
    lite = fx.spread_lite()
    images = fx.images(lite, SIZE, 1)
    ncnn_report = export_detector_ncnn(lite, root / 'lite', images, verbose=False)
    export_detector_onnx(lite, root / 'lite_raw.onnx', images, with_nms=False, verbose=False)
    backbone = fx.backbone(widen_factor=0.5, out_indices=(1, 2, 3))
    export_backbone_ncnn(backbone, root / 'bb', (1, 3, *SIZE), verbose=False)
    with torch.no_grad():
        features = [list(f.shape[1:]) for f in backbone(torch.zeros(1, 3, *SIZE))]
    picture = make_test_picture(*SIZE, seed=3)
    write_ppm(root / 'pic.ppm', picture)
    return dict(root=root, lite=lite, picture=picture, features=features,
                test_cfg=ncnn_report['postprocess']['test_cfg'])


def _blocked_python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    """``code`` in a child Python in which every package of :data:`BLOCKED` raises ImportError."""
    prelude = f'import sys\nsys.modules.update(dict.fromkeys({BLOCKED!r}))\n'
    return subprocess.run([sys.executable, '-c', prelude + textwrap.dedent(code)], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS='1'))


def _dets(rows: list[dict]) -> dict[str, np.ndarray]:
    return dict(boxes=np.array([d['box'] for d in rows], np.float32).reshape(-1, 4),
                scores=np.array([d['score'] for d in rows], np.float32),
                labels=np.array([d['label'] for d in rows], np.int64))


def test_runners_with_torch_blocked(exports: dict, tmp_path: Path) -> None:
    """The package's runtime imports and runs without torch / mmcv / mmdet: ncnn (lite detector, backbone) and ONNX
    Runtime (raw lite export) give mmdet's detections and the backbone's feature shapes; nothing outside
    shufflenet_det.runtime is imported."""
    from shufflenet_det.deploy.parity import compare_detections
    from shufflenet_det.runtime.images import letterbox
    from shufflenet_det.utils.predict import predict_detections, preprocess_meta
    root = exports['root']
    calls = [['ncnn', str(root / 'lite.param'), '--image', str(root / 'pic.ppm'), '--out-json', 'ncnn_lite.json'],
             ['ncnn', str(root / 'bb.param'), '--out-json', 'ncnn_bb.json', '--bench', '2', '--warmup', '1'],
             ['onnx', str(root / 'lite_raw.onnx'), '--image', str(root / 'pic.ppm'), '--threads', '1', '--out-json',
              'onnx_lite.json'],
             ['onnx', str(root / 'missing.onnx')]]
    proc = _blocked_python(f'''
        import json
        from shufflenet_det.runtime.cli import main
        from shufflenet_det.runtime.errors import run_main
        codes = [run_main(main, argv) for argv in {calls!r}]
        loaded = sorted(m for m in sys.modules if m.split('.')[0] in {BLOCKED!r} and sys.modules[m] is not None)
        ours = sorted(m for m in sys.modules if m.startswith('shufflenet_det')
                      and not m.startswith('shufflenet_det.runtime'))
        print(json.dumps(dict(codes=codes, loaded=loaded, ours=ours)))
        ''', tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    status = json.loads(proc.stdout.splitlines()[-1])
    assert status['codes'] == [0, 0, 0, 2], proc.stderr[-3000:]
    assert status['loaded'] == [] and status['ours'] == ['shufflenet_det', 'shufflenet_det.version'], status
    errors = [line for line in proc.stderr.splitlines() if line.startswith('error:')]
    assert len(errors) == 1 and 'missing.onnx' in errors[0] and 'does not exist' in errors[0], proc.stderr[-3000:]
    # the detections against mmdet's predict on the same picture, normalised by the runtime's letterbox (no resize)
    lite = exports['lite']
    x, scale = letterbox(exports['picture'], SIZE, preprocess_meta(lite))
    assert scale == 1.0
    ref = predict_detections(lite, torch.from_numpy(x))[0]
    assert len(ref['scores']) > 0
    for name, box_atol, score_atol in (('ncnn_lite.json', 1.0, 5e-3), ('onnx_lite.json', 0.05, 1e-4)):
        result = json.loads((tmp_path / name).read_text())
        res = compare_detections(ref, _dets(result['detections']), box_atol=box_atol, score_atol=score_atol,
                                 test_cfg=exports['test_cfg'])
        assert res['passed'], (name, res)
    backbone = json.loads((tmp_path / 'ncnn_bb.json').read_text())
    assert list(backbone['outputs'].values()) == exports['features']  # ncnn drops the batch axis
    assert backbone['latency']['runs'] == 2 and backbone['latency']['median_ms'] > 0


def _blocker_packages(folder: Path) -> Path:
    """Packages named like torch, mmcv, ... and shufflenet_det whose import fails, to put first on PYTHONPATH."""
    for name in (*BLOCKED, 'shufflenet_det'):
        (folder / name).mkdir(parents=True)
        (folder / name / '__init__.py').write_text(f'raise ImportError("{name} is not installed on this board")\n')
    return folder


def test_copied_runtime_folder_runs_alone(exports: dict, tmp_path: Path) -> None:
    """``shufflenet_det/runtime/`` copied alone next to the models runs as ``python -m runtime`` (torch, mmcv,
    mmdet and shufflenet_det unimportable) and gives the same results as the runtime in the package."""
    import shufflenet_det.runtime
    from shufflenet_det.runtime.cli import main
    root = exports['root']
    board = tmp_path / 'board'
    shutil.copytree(Path(shufflenet_det.runtime.__file__).parent, board / 'runtime',
                    ignore=shutil.ignore_patterns('__pycache__'))
    for name in ('lite.param', 'lite.bin', 'lite.json', 'lite_raw.onnx', 'lite_raw.onnx.json', 'pic.ppm'):
        shutil.copy(root / name, board / name)
    env = dict(os.environ, PYTHONPATH=str(_blocker_packages(tmp_path / 'blockers')), OMP_NUM_THREADS='1')
    for kind, model in (('ncnn', 'lite.param'), ('onnx', 'lite_raw.onnx')):
        args = [kind, model, '--image', 'pic.ppm', '--threads', '1', '--score-thr', '0.05']
        proc = subprocess.run([sys.executable, '-m', 'runtime', *args, '--out-json', 'board.json'], cwd=board,
                              capture_output=True, text=True, timeout=300, env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert main([kind, str(root / model), '--image', str(root / 'pic.ppm'), '--threads', '1', '--score-thr',
                     '0.05', '--out-json', str(tmp_path / 'tree.json')]) == 0
        copied = json.loads((board / 'board.json').read_text())
        in_tree = json.loads((tmp_path / 'tree.json').read_text())
        assert copied['detections'] and copied['detections'] == in_tree['detections'], kind
    # the copy's own error policy: one line, exit 2, no traceback
    proc = subprocess.run([sys.executable, '-m', 'runtime', 'ncnn', 'nothing.param'], cwd=board, capture_output=True,
                          text=True, timeout=300, env=env)
    assert proc.returncode == 2 and proc.stderr.startswith('error:') and 'Traceback' not in proc.stderr, proc.stderr
    proc = subprocess.run([sys.executable, '-m', 'runtime', '--help'], cwd=board, capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 0 and 'python -m runtime' in proc.stdout and 'ncnn' in proc.stdout
