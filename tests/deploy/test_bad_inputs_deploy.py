"""Every deploy / benchmark / application tool fails safely on bad input.

Each case runs a tool as a user would (a subprocess from the repository root) with one bad argument or file and
checks: a non-zero exit, one ``error:`` message naming the culprit, no traceback, and the work folder exactly as it
was (:func:`helpers.assert_clean_failure`). The models are tiny (ShuffleNetV2 0.5x at 64x64) and built once per
module; most cases fail in argument checks before any model is built.
"""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import deploy_fixtures as fx
from helpers import REPO, assert_clean_failure, load_script, tree_snapshot
from tiny_mini_coco import run_tool

pytestmark = pytest.mark.slow  # tool runs, exports, training: make test-fast leaves these out

BB_ARGS = '{"widen_factor": 0.5, "out_indices": [3]}'
RUNNER = 'tools/deploy/ncnn_runner.py'
MINI_NAME = 'retinanet_shufflenetv2-1x_fpn_mini-coco'


@pytest.fixture(scope='module')
def ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One work folder with the inputs of every case (nothing in it may change)."""
    from PIL import Image

    from shufflenet_det.deploy.ncnn_export import export_backbone_ncnn
    root = tmp_path_factory.mktemp('bad_inputs')
    # a checkpoint of another model: ShuffleNetV2 1.0x where the cases build 0.5x; a detector with 3 classes, not 4
    torch.save({'state_dict': fx.backbone(1.0, (3,)).state_dict()}, root / 'backbone_1x.pth')
    det = fx.spread_retinanet(**{'model.bbox_head.num_classes': 3})
    torch.save({'state_dict': det.state_dict()}, root / 'retinanet_3cls.pth')
    # a static ncnn backbone exported at 64x64 (with its .json side-car)
    export_backbone_ncnn(fx.backbone(0.5, (3,)), root / 'bb', (1, 3, 64, 64), verbose=False)
    # an ONNX "detector" whose report says static 64x64; the model file itself is garbage
    (root / 'det.onnx').write_bytes(b'this is not an ONNX protobuf \x00\x01\x02' * 8)
    pre = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], bgr_to_rgb=True)
    (root / 'det.onnx.json').write_text(json.dumps(dict(what='detector', with_nms=True, dynamic=False,
                                                        input_shape=[1, 3, 64, 64],
                                                        postprocess=dict(preprocess=pre))))
    # images: a real one, a text file named .png, malformed / truncated / empty PPMs
    Image.new('RGB', (64, 48), (90, 120, 30)).save(root / 'real.png')
    (root / 'notanimage.png').write_text('hello, I am text\n')
    (root / 'malformed.ppm').write_bytes(b'P6\nsixty four\n255\n' + bytes(64))
    (root / 'truncated.ppm').write_bytes(b'P6\n64 64\n255\n' + bytes(100))
    (root / 'header_eof.ppm').write_bytes(b'P6\n64')  # the header parser used to spin here forever
    (root / 'comment_eof.ppm').write_bytes(b'P6\n# a comment without end')
    (root / 'empty.ppm').write_bytes(b'')
    (root / 'a_file').write_text('a regular file of the user: nothing can be created below it\n')
    (root / 'corrupt.json').write_text('{"config": "x.py", "metrics": {"bbox_mAP": ')
    runs = root / 'runs' / MINI_NAME
    runs.mkdir(parents=True)
    (runs / 'results.json').write_text('{"config": "half written')
    user_data = root / 'my_data'
    user_data.mkdir()
    (user_data / 'notes.txt').write_text('mine\n')
    return root


def _cases() -> list[tuple[str, list[str], list[str]]]:
    """``(id, arguments ({ws} = the work folder), strings the message must name)``."""
    export_bb = ['--backbone', 'ShuffleNetV2', '--backbone-args', BB_ARGS, '--shape', '64', '64']
    mini = str(fx.MINI_CFG)
    return [
        # exporters
        ('onnx-out-is-checkpoint', ['tools/deploy/export_onnx.py', *export_bb, '--checkpoint', '{ws}/x.onnx',
                                    '--out', '{ws}/x.onnx'], ['--out', '--checkpoint']),
        ('onnx-other-width-checkpoint', ['tools/deploy/export_onnx.py', *export_bb, '--checkpoint',
                                         '{ws}/backbone_1x.pth', '--out', '{ws}/o.onnx'], ['backbone_1x.pth']),
        ('onnx-other-classes-checkpoint', ['tools/deploy/export_onnx.py', '--config', mini, '--shape', '64', '64',
                                           '--checkpoint', '{ws}/retinanet_3cls.pth', '--out', '{ws}/o.onnx'],
         ['retinanet_3cls.pth']),
        ('onnx-image-not-a-picture', ['tools/deploy/export_onnx.py', '--config', mini, '--shape', '64', '64',
                                      '--images', '{ws}/notanimage.png', '--out', '{ws}/o.onnx'],
         ['notanimage.png']),
        ('onnx-out-below-a-file', ['tools/deploy/export_onnx.py', *export_bb, '--out', '{ws}/a_file/o.onnx'],
         ['a_file']),
        ('ncnn-out-below-a-file', ['tools/deploy/export_ncnn.py', *export_bb, '--out', '{ws}/a_file/m'], ['a_file']),
        ('ncnn-other-width-checkpoint', ['tools/deploy/export_ncnn.py', *export_bb, '--checkpoint',
                                         '{ws}/backbone_1x.pth', '--out', '{ws}/m'], ['backbone_1x.pth']),
        ('mmdeploy-other-classes-checkpoint',
         ['tools/deploy/mmdeploy_deploy.py', str(REPO / 'configs/deploy/detection_onnxruntime_static-256x256.py'),
          mini, '{ws}/retinanet_3cls.pth', '{ws}/real.png', '--work-dir', '{ws}/mmdeploy_out'],
         ['retinanet_3cls.pth']),
        # ONNX evaluation
        ('eval-limit-0', ['tools/deploy/eval_onnx.py', '{ws}/det.onnx', '--config', mini, '--limit', '0'],
         ['--limit']),
        ('eval-limit-negative', ['tools/deploy/eval_onnx.py', '{ws}/det.onnx', '--config', mini, '--limit', '-3'],
         ['--limit']),
        ('eval-shape-not-static-size', ['tools/deploy/eval_onnx.py', '{ws}/det.onnx', '--config', mini,
                                        '--shape', '32', '48'], ['--shape', '64x64']),
        ('eval-corrupt-onnx', ['tools/deploy/eval_onnx.py', '{ws}/det.onnx', '--config', mini, '--no-torch'],
         ['det.onnx']),
        ('eval-out-is-model', ['tools/deploy/eval_onnx.py', '{ws}/det.onnx', '--config', mini, '--no-torch',
                               '--out', '{ws}/det.onnx'], ['--out', 'det.onnx']),
        ('eval-out-below-a-file', ['tools/deploy/eval_onnx.py', '{ws}/det.onnx', '--config', mini, '--no-torch',
                                   '--out', '{ws}/a_file/r.json'], ['a_file']),
        # the board runner
        ('runner-malformed-ppm', [RUNNER, '{ws}/bb.param', '--image', '{ws}/malformed.ppm'], ['malformed.ppm']),
        ('runner-truncated-ppm', [RUNNER, '{ws}/bb.param', '--image', '{ws}/truncated.ppm'], ['truncated.ppm']),
        ('runner-header-eof-ppm', [RUNNER, '{ws}/bb.param', '--image', '{ws}/header_eof.ppm'], ['header_eof.ppm']),
        ('runner-comment-eof-ppm', [RUNNER, '{ws}/bb.param', '--image', '{ws}/comment_eof.ppm'],
         ['comment_eof.ppm']),
        ('runner-empty-ppm', [RUNNER, '{ws}/bb.param', '--image', '{ws}/empty.ppm'], ['empty.ppm']),
        ('runner-size-not-static-size', [RUNNER, '{ws}/bb.param', '--size', '96', '96'], ['--size', '64x64']),
        ('runner-size-zero', [RUNNER, '{ws}/bb.param', '--size', '0', '0'], ['--size']),
        ('runner-size-negative', [RUNNER, '{ws}/bb.param', '--size', '-64', '64'], ['--size']),
        ('runner-out-json-is-model', [RUNNER, '{ws}/bb.param', '--out-json', '{ws}/bb.json'], ['--out-json']),
        # benchmark, FLOPs
        ('benchmark-threads-0', ['tools/analysis_tools/benchmark.py', '--backbone', 'ShuffleNetV2', '--threads', '0'],
         ['--threads']),
        ('benchmark-corrupt-results', ['tools/analysis_tools/benchmark.py', '--backbone', 'ShuffleNetV2',
                                       '--results', '{ws}/corrupt.json'], ['corrupt.json']),
        ('benchmark-out-below-a-file', ['tools/analysis_tools/benchmark.py', '--backbone', 'ShuffleNetV2',
                                        '--out', '{ws}/a_file/b.json'], ['a_file']),
        ('flops-json-below-a-file', ['tools/analysis_tools/get_flops.py', '--backbone', 'ShuffleNetV2',
                                     '--json', '{ws}/a_file/f.json'], ['a_file']),
        # applications
        ('side-by-side-reuse-corrupt', ['tools/analysis_tools/side_by_side.py', '--reuse', '--runs-dir', '{ws}/runs',
                                        '--out', '{ws}/sbs.json', '--data-root', '{ws}/no_data'], ['results.json']),
        ('main-job-target-map-2', ['tools/main_job.py', '--target-map', '2', '--work-dir', '{ws}/job',
                                   '--data-root', '{ws}/no_data'], ['--target-map']),
        ('main-job-num-vis-negative', ['tools/main_job.py', '--num-vis', '-1', '--work-dir', '{ws}/job',
                                       '--data-root', '{ws}/no_data'], ['--num-vis']),
        ('mini-coco-overwrite-a-file', ['tools/misc/make_mini_coco.py', '--out', '{ws}/a_file', '--overwrite',
                                        '--num-train', '1', '--num-val', '1'], ['a_file']),
        ('mini-coco-overwrite-user-folder', ['tools/misc/make_mini_coco.py', '--out', '{ws}/my_data',
                                             '--overwrite', '--num-train', '1', '--num-val', '1'], ['my_data']),
    ]


@pytest.mark.parametrize('args,names', [pytest.param(a, n, id=i) for i, a, n in _cases()])
def test_bad_input_fails_cleanly(ws: Path, args: list[str], names: list[str]) -> None:
    before = tree_snapshot(ws)
    proc = run_tool([a.replace('{ws}', str(ws)) for a in args], timeout=120)
    assert_clean_failure(proc, names, ws, before)
    assert not (ws / 'mmdeploy_out').exists() and not (ws / 'job').exists()


def test_main_job_help_documents_num_vis_0() -> None:
    proc = run_tool(['tools/main_job.py', '--help'], timeout=60)
    assert proc.returncode == 0 and 'no picture' in ' '.join(proc.stdout.split())


def test_runner_reads_a_good_ppm_and_generates_one(ws: Path, tmp_path: Path) -> None:
    """The stricter PPM parser still reads what --generate writes (and comments in headers)."""
    from shufflenet_det.runtime.images import read_image
    runner = load_script(RUNNER, 'ncnn_runner_bad_inputs')
    ppm = tmp_path / 'pic.ppm'
    assert runner.run_main(runner.main, [str(ws / 'bb.param'), '--generate', str(ppm)]) == 0
    img = read_image(str(ppm))
    assert img.shape == (64, 64, 3)
    raw = ppm.read_bytes()
    (tmp_path / 'commented.ppm').write_bytes(raw.replace(b'P6\n', b'P6\n# made by a test\n', 1))
    assert (read_image(str(tmp_path / 'commented.ppm')) == img).all()
    assert sorted(p.name for p in tmp_path.iterdir()) == ['commented.ppm', 'pic.ppm']


@pytest.mark.parametrize('tool,out_name,marker', [('export_ncnn', 'm', '.tmpdir'),
                                                    ('export_onnx', 'm.onnx', '.tmp')])
def test_sigterm_during_export_leaves_nothing(tmp_path: Path, tool: str, out_name: str, marker: str) -> None:
    """SIGTERM while the exporter traces / converts (pnnx running for ncnn): exit 143; the temporary outputs and
    pnnx's scratch folder are gone."""
    out = tmp_path / 'out'
    out.mkdir()
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore')
    proc = subprocess.Popen([sys.executable, f'tools/deploy/{tool}.py', '--backbone', 'ShuffleNetV2',
                             '--backbone-args', '{"widen_factor": 1.5}', '--shape', '128', '128',
                             '--out', str(out / out_name)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not any(p.name.endswith(marker) for p in out.iterdir()):
            assert proc.poll() is None, f'the export ended before its temporary file appeared: {proc.stderr.read()}'
            assert time.monotonic() < deadline, 'no temporary file after 120 s'
            time.sleep(0.01)
        time.sleep(0.1)  # inside the trace / the export
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, stderr[-2000:]
    assert 'Traceback' not in stderr and 'interrupted by SIGTERM' in stderr
    assert list(out.iterdir()) == [], sorted(p.name for p in out.iterdir())


def test_full_disk_during_ncnn_export_leaves_nothing(tmp_path: Path, monkeypatch, capsys,
                                                     keep_signal_handlers) -> None:
    """The disk fills while pnnx writes: one clear message, no scratch folder, no temporary outputs."""
    from shufflenet_det.deploy import ncnn_export
    from shufflenet_det.utils.cli import run_main

    def full_disk(model, example, param, bin_path, workdir, *args, **kwargs):
        (workdir / 'model.pt').write_bytes(b'half a TorchScript archive')
        param.write_text('7767517\n')
        raise OSError(errno.ENOSPC, 'No space left on device', str(workdir / 'model.pnnx.bin'))

    monkeypatch.setattr(ncnn_export, 'pnnx_convert', full_disk)
    tool = load_script('tools/deploy/export_ncnn.py', 'export_ncnn_full_disk')
    rc = run_main(tool.main, ['--backbone', 'ShuffleNetV2', '--backbone-args', BB_ARGS, '--shape', '64', '64',
                              '--out', str(tmp_path / 'm')])
    err = capsys.readouterr().err
    assert rc == 2 and 'no space left on the device' in err and 'Traceback' not in err, err
    assert list(tmp_path.iterdir()) == []


def test_full_disk_writing_onnx_report_leaves_no_model(tmp_path: Path, monkeypatch, capsys,
                                                       keep_signal_handlers) -> None:
    """The model and its report are renamed together: a failure while writing the report leaves neither."""
    from shufflenet_det.deploy import exporter
    from shufflenet_det.utils.cli import run_main
    real = exporter.require_parity

    def parity_then_full_disk(output, parity, verbose=True):
        real(output, parity, verbose)
        raise OSError(errno.ENOSPC, 'No space left on device', str(output) + '.json')

    monkeypatch.setattr(exporter, 'require_parity', parity_then_full_disk)
    tool = load_script('tools/deploy/export_onnx.py', 'export_onnx_full_disk')
    rc = run_main(tool.main, ['--backbone', 'ShuffleNetV2', '--backbone-args', BB_ARGS, '--shape', '64', '64',
                              '--out', str(tmp_path / 'm.onnx')])
    err = capsys.readouterr().err
    assert rc == 2 and 'no space left on the device' in err and 'm.onnx.json' in err, err
    assert list(tmp_path.iterdir()) == []
