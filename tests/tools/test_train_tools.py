"""tools/train.py and tools/test.py: early data/weights errors, crash-safe checkpoints, resume after SIGKILL."""
from __future__ import annotations

import copy
import json
import os
import pickle
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from shufflenet_det.apps.launch import load_run_config, select_dist_backend
from shufflenet_det.datasets import DatasetCheckError, check_config_data, layout
from shufflenet_det.engine import AtomicCheckpointHook
from shufflenet_det.utils.checkpoint import read_checkpoint
from shufflenet_det.utils.io import write_bytes_atomic
from tiny_mini_coco import REPO, load_script, make_dataset, run_tool, write_config

pytestmark = pytest.mark.slow  # tool runs, exports, training: make test-fast leaves these out

DEFAULT_CONFIG = REPO / 'configs' / 'retinanet_shufflenetv2.py'


def load_tool(name: str):
    return load_script(f'tools/{name}.py')


@pytest.fixture(scope='module')
def tiny_data(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp('data') / 'mini')


@pytest.fixture
def no_runner(monkeypatch):
    """Fail the test if anything gets as far as building a model or a Runner."""
    from mmdet.registry import MODELS

    def forbidden(*args, **kwargs):
        raise AssertionError('the model/Runner was built before the data check')
    monkeypatch.setattr(MODELS, 'build', forbidden)
    monkeypatch.setattr('shufflenet_det.apps.launch.build_runner', forbidden)


# --------------------------------------------------------------------------------------------- early errors
def test_missing_coco_names_layout_and_mini_command(tmp_path, monkeypatch, no_runner):
    monkeypatch.chdir(tmp_path)  # no data/ here
    with pytest.raises(SystemExit) as exc:
        load_tool('train').main([str(DEFAULT_CONFIG), '--work-dir', str(tmp_path / 'wd')])
    msg = str(exc.value)
    assert "'data/coco/annotations/instances_train2017.json'" in msg and 'does not exist' in msg
    for path in ('data/coco/annotations/instances_val2017.json', 'data/coco/train2017/', 'data/coco/val2017/'):
        assert path in msg
    assert 'python tools/misc/make_mini_coco.py' in msg
    assert not (tmp_path / 'wd').exists()

    with pytest.raises(SystemExit) as exc:  # tools/test.py checks the test split the same way
        load_tool('test').main([str(DEFAULT_CONFIG), str(DEFAULT_CONFIG), '--work-dir', str(tmp_path / 'wd')])
    assert 'instances_val2017.json' in str(exc.value)


def test_missing_pretrained_weights_named_before_build(tiny_data, tmp_path, monkeypatch, no_runner):
    # the default config names shufflenet_det://torchvision/shufflenet_v2_x1_0: an empty cache and no network
    from weights_server import closed_port_url
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    monkeypatch.setenv('SHUFFLENET_DET_WEIGHTS_MIRROR', closed_port_url())
    root = f'{tiny_data}/'
    with pytest.raises(SystemExit) as exc:
        load_tool('train').main([str(DEFAULT_CONFIG), '--work-dir', str(tmp_path / 'wd'), '--cfg-options',
                                 f'train_dataloader.dataset.data_root={root}',
                                 f'val_dataloader.dataset.data_root={root}',
                                 f'val_evaluator.ann_file={root}annotations/instances_val2017.json'])
    msg = str(exc.value)
    cached = tmp_path / 'torch' / 'hub' / 'checkpoints' / 'shufflenetv2_x1-5666bf0f80.pth'
    assert 'cannot download shufflenet_det://torchvision/shufflenet_v2_x1_0 from http://127.0.0.1' in msg
    assert '/models/shufflenetv2_x1-5666bf0f80.pth' in msg and f'put the file at {cached}' in msg, msg
    assert 'convert_weights.py' in msg
    assert not cached.exists() and not (tmp_path / 'wd').exists()


@pytest.fixture
def broken_copy(tiny_data, tmp_path):
    """A private copy of the tiny dataset (annotations only; images are symlinked) that a test may damage."""
    root = tmp_path / 'copy'
    (root / 'annotations').mkdir(parents=True)
    for split in ('train2017', 'val2017'):
        (root / split).symlink_to(tiny_data / split)
        name = f'instances_{split}.json'
        (root / 'annotations' / name).write_bytes((tiny_data / 'annotations' / name).read_bytes())
    return root


@pytest.mark.parametrize('damage, expected', [
    ('missing', 'does not exist'),
    ('empty', 'is empty (0 bytes)'),
    ('truncated', 'is not valid JSON (line 1'),
    ('not_object', 'must hold a JSON object'),
    ('not_coco', "missing or non-list keys ['annotations']"),
    ('no_images', 'lists no images'),
])
def test_bad_annotation_files(broken_copy, tmp_path, damage, expected):
    ann = broken_copy / 'annotations' / 'instances_train2017.json'
    text = ann.read_text()
    if damage == 'missing':
        ann.unlink()
    elif damage == 'empty':
        ann.write_text('')
    elif damage == 'truncated':
        ann.write_text(text[:len(text) // 2])
    elif damage == 'not_object':
        ann.write_text('[1, 2]')
    elif damage == 'not_coco':
        data = json.loads(text)
        del data['annotations']
        ann.write_text(json.dumps(data))
    elif damage == 'no_images':
        ann.write_text(json.dumps(dict(json.loads(text), images=[])))
    cfg = load_run_config(str(write_config(tmp_path / 'cfg.py', broken_copy)))
    with pytest.raises(DatasetCheckError) as exc:
        check_config_data(cfg, ('train', 'val'))
    assert str(ann) in str(exc.value) and expected in str(exc.value)
    check_config_data(cfg, ('val',))  # the other split is fine


def test_large_annotation_files_get_a_cheap_truncation_check(broken_copy, tmp_path, monkeypatch):
    monkeypatch.setattr(layout, 'FULL_PARSE_LIMIT', 10)
    cfg = load_run_config(str(write_config(tmp_path / 'cfg.py', broken_copy)))
    check_config_data(cfg, ('train', 'val'))
    ann = broken_copy / 'annotations' / 'instances_val2017.json'
    ann.write_text(ann.read_text()[:-300])
    with pytest.raises(DatasetCheckError, match='truncated'):
        check_config_data(cfg, ('train', 'val'))


def test_image_folder_missing(broken_copy, tmp_path):
    (broken_copy / 'val2017').unlink()
    cfg = load_run_config(str(write_config(tmp_path / 'cfg.py', broken_copy)))
    with pytest.raises(DatasetCheckError, match=r"image folder '.*val2017/?' .* does not exist"):
        check_config_data(cfg, ('val',))


def test_gloo_without_cuda():
    base = load_run_config(str(DEFAULT_CONFIG), launcher='pytorch')
    cfg = copy.deepcopy(base)
    assert cfg.env_cfg.dist_cfg.backend == 'nccl'
    assert select_dist_backend(cfg, cuda_available=False) == 'gloo'
    assert cfg.env_cfg.dist_cfg.backend == 'gloo'
    assert cfg.model_wrapper_cfg.device_ids is None  # DDP of a CPU model takes no device ids
    # no find_unused_parameters (the unused conv5 is frozen), unless a config asks for it
    assert cfg.model_wrapper_cfg.find_unused_parameters is False
    cfg = copy.deepcopy(base)
    cfg.find_unused_parameters = True
    select_dist_backend(cfg, cuda_available=False)
    assert cfg.model_wrapper_cfg.find_unused_parameters is True
    cfg = copy.deepcopy(base)
    assert select_dist_backend(cfg, cuda_available=True) == 'nccl'
    assert 'model_wrapper_cfg' not in cfg
    cfg = copy.deepcopy(base)
    cfg.launcher = 'none'
    assert select_dist_backend(cfg, cuda_available=False) is None


# --------------------------------------------------------------------------------------------- atomic checkpoints
def test_write_bytes_atomic_keeps_old_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / 'f.bin'
    write_bytes_atomic(b'old', target)

    def failing_replace(src, dst):
        raise OSError('power cut')
    monkeypatch.setattr(os, 'replace', failing_replace)
    with pytest.raises(OSError):
        write_bytes_atomic(b'new', target)
    assert target.read_bytes() == b'old' and sorted(os.listdir(tmp_path)) == ['f.bin']


@pytest.mark.compat
def test_checkpoint_hook_survives_a_crash_while_saving(tmp_path, monkeypatch):
    """A real mmengine Runner dies while its second checkpoint is being written: the first one stays complete and
    named by ``last_checkpoint`` (mmengine's own hook, with max_keep_ckpts=1, deletes it before writing the new one),
    and a resumed run finishes, pruning old checkpoints only once the new one is complete."""
    from mmengine.model import BaseModel
    from mmengine.runner import Runner

    class Toy(BaseModel):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(2, 1)

        def forward(self, inputs, data_samples=None, mode='tensor'):
            out = self.linear(torch.stack(inputs))
            return dict(loss=out.pow(2).mean()) if mode == 'loss' else out

    def make_runner(**kwargs):
        return Runner(model=Toy(), work_dir=str(tmp_path),
                      train_dataloader=dict(dataset=[dict(inputs=torch.randn(2)) for _ in range(4)], batch_size=2,
                                            sampler=dict(type='DefaultSampler', shuffle=False)),
                      optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
                      train_cfg=dict(by_epoch=True, max_epochs=3),
                      default_hooks=dict(checkpoint=dict(type=AtomicCheckpointHook, interval=1, max_keep_ckpts=1)),
                      default_scope='mmdet', **kwargs)

    real_fsync = os.fsync

    def die_writing_epoch_2(fd):  # the data of epoch_2.pth is in its temporary file, not yet renamed
        if any('epoch_2.pth' in p.name for p in tmp_path.iterdir()):
            raise KeyboardInterrupt('killed while saving')
        real_fsync(fd)

    monkeypatch.setattr(os, 'fsync', die_writing_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        make_runner().train()
    monkeypatch.setattr(os, 'fsync', real_fsync)
    files = sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(('.pth', '.tmp', 'last_checkpoint')))
    assert files == ['epoch_1.pth', 'last_checkpoint']  # no epoch_2.pth, complete or partial
    assert (tmp_path / 'last_checkpoint').read_text() == str(tmp_path / 'epoch_1.pth')
    ckpt = read_checkpoint(tmp_path / 'epoch_1.pth')  # the project's safe reader, on every torch
    assert ckpt['meta']['epoch'] == 1 and 'linear.weight' in ckpt['state_dict']

    runner = make_runner(resume=True)
    runner.train()
    assert runner.iter == 6
    files = sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(('.pth', '.tmp', 'last_checkpoint')))
    assert files == ['epoch_3.pth', 'last_checkpoint']
    assert (tmp_path / 'last_checkpoint').read_text() == str(tmp_path / 'epoch_3.pth')


# --------------------------------------------------------------------------------------------- kill and resume
@pytest.mark.compat
def test_sigkill_mid_epoch_then_resume(tiny_data, tmp_path):
    cfg = write_config(tmp_path / 'tiny.py', tiny_data, max_epochs=3)
    work = tmp_path / 'work'
    log_path = tmp_path / 'first.log'
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore')
    with open(log_path, 'w') as log:
        proc = subprocess.Popen([sys.executable, 'tools/train.py', str(cfg), '--work-dir', str(work)], cwd=REPO,
                                env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 240
        try:
            while time.time() < deadline and proc.poll() is None:  # kill once epoch 2 is under way
                if re.search(r'Epoch\(train\) +\[2\]\[[1-7]/8\]', log_path.read_text()):
                    break
                time.sleep(0.05)
            assert proc.poll() is None, 'training finished (or died) before it could be killed:\n' + \
                log_path.read_text()[-3000:]
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    # the kill lands during epoch 2, or on a fast machine just after its checkpoint: either way last_checkpoint
    # names a complete checkpoint and training resumes right after it
    saved = (work / 'last_checkpoint').read_text().strip()
    assert saved in (str(work / 'epoch_1.pth'), str(work / 'epoch_2.pth')), saved
    resumed = int(saved[-len('1.pth'):-len('.pth')])
    assert not (work / 'epoch_3.pth').exists()

    done = run_tool(['tools/train.py', str(cfg), '--work-dir', str(work), '--resume'], timeout=300)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    assert re.search(rf'resumed epoch: {resumed}, iter: {8 * resumed}', out), out[-4000:]
    assert not re.search(rf'Epoch\(train\) +\[[1-{resumed}]\]', out)  # finished epochs were not trained again
    assert re.search(r'Epoch\(train\) +\[3\]\[8/8\]', out)
    assert re.search(r'Epoch\(val\) +\[3\]\[2/2\]', out)  # evaluated after the last epoch
    final = read_checkpoint(work / 'epoch_3.pth')
    assert final['meta']['epoch'] == 3 and final['meta']['iter'] == 24
    assert (work / 'last_checkpoint').read_text().strip() == str(work / 'epoch_3.pth')
    assert not [p for p in work.iterdir() if p.name.endswith('.tmp')]

    test = run_tool(['tools/test.py', str(cfg), str(work / 'epoch_3.pth'), '--work-dir', str(tmp_path / 'test'),
                     '--out', str(tmp_path / 'preds.pkl')], timeout=300)
    assert test.returncode == 0, (test.stdout + test.stderr)[-4000:]
    assert re.search(r'Epoch\(test\) +\[2/2\]', test.stdout + test.stderr)
    with open(tmp_path / 'preds.pkl', 'rb') as f:
        preds = pickle.load(f)
    assert len(preds) == 4 and {'img_id', 'pred_instances'} <= set(preds[0])


# --------------------------------------------------------------------------------------------- main job
def test_main_job_end_to_end_on_tiny_data(tiny_data, tmp_path):
    """tools/main_job.py's job on the tiny dataset: trains, evaluates, draws, records; the side-by-side tool
    compares two such records."""
    from PIL import Image

    from shufflenet_det.apps.mini_job import format_table, interleaved_step_times, run_job
    from tiny_mini_coco import TINY_SPEC
    cfg = write_config(tmp_path / 'tiny.py', tiny_data, max_epochs=1)
    work = tmp_path / 'job'
    results = run_job(str(cfg), str(work), data_root=str(tiny_data), spec=TINY_SPEC, num_vis=3)
    assert results['dataset']['generated'] is False  # the existing dataset of the same spec is reused
    assert results['train']['iterations'] == 8 and results['train']['seconds_per_iter'] > 0
    assert json.loads((work / 'results.json').read_text()) == json.loads(json.dumps(results))
    # conv5 of ShuffleNet V2 is not on the path of out_indices (1, 2, 3): 464 * 1024 weights + 2 * 1024 BN
    assert results['model']['params'] - results['model']['params_used'] == 464 * 1024 + 2 * 1024
    assert results['model']['flops'] > 0 and results['model']['flops_input'] == [1, 3, 64, 64]
    picture = Image.open(work / 'detections.png')
    assert picture.format == 'PNG' and picture.size[0] >= 2 * 2 * 64  # 2 columns of ground truth | prediction
    assert 'mAP_50' in format_table(results)

    side = load_tool('analysis_tools/side_by_side')
    record = side.compare({'retinanet': results, 'retinanet-r18': results})
    # exact: a record against itself, x / x is exactly 1.0 in IEEE arithmetic
    assert record['ratios'] == {'seconds_per_iter': 1.0, 'params_used': 1.0, 'flops': 1.0}
    assert record['ratio_of'] == 'RetinaNet ShuffleNetV2 1.0x / RetinaNet ResNet-18'
    assert 'RetinaNet ResNet-18' in side.format_comparison(record)
    lite = side.compare({'lite': results, 'retinanet': results}, pair=('lite', 'retinanet'))
    assert [m['model'] for m in lite['models']] == ['Lite-m ShuffleNetV2 1.0x', 'RetinaNet ShuffleNetV2 1.0x']
    with pytest.raises(ValueError, match='--models takes two different models'):
        side.compare({'lite': results}, pair=('lite', 'lite'))
    steps = interleaved_step_times({'retinanet': str(cfg), 'retinanet-r18': str(cfg)}, str(tiny_data), rounds=1,
                                   warmup=0)
    assert set(steps) == {'retinanet', 'retinanet-r18'} and all(t > 0 for t in steps.values())
    record = side.compare({'retinanet': results, 'retinanet-r18': results}, {'retinanet': 0.5, 'retinanet-r18': 2.0})
    assert record['ratios']['interleaved_seconds_per_step'] == 0.25  # exact: 0.5 / 2.0, powers of two
    assert 's/step*' in side.format_comparison(record)


def test_main_job_lite_option_on_tiny_data(tiny_data, tmp_path):
    """`tools/main_job.py --model lite`'s config through the job on the tiny dataset: the lite detector trains with
    its EMA and epoch hooks, is evaluated, and its record counts the training-only branch apart."""
    from shufflenet_det.apps.mini_job import MINI_CONFIGS, mini_config, run_job
    from tiny_mini_coco import TINY_SPEC
    assert MINI_CONFIGS['lite'] == 'mini/lite-m_shufflenetv2-1x_mini-coco.py'
    base = Path(mini_config('lite', REPO / 'configs'))
    cfg = write_config(tmp_path / 'tiny_lite.py', tiny_data, base=base, max_epochs=1)
    results = run_job(str(cfg), str(tmp_path / 'job'), data_root=str(tiny_data), spec=TINY_SPEC, num_vis=0)
    assert results['train']['iterations'] == 8 and 0.0 <= results['metrics']['bbox_mAP'] <= 1.0
    assert 'bbox_mAP_75' in results['metrics']
    # the auxiliary neck + head and ShuffleNet V2's conv5 hold parameters that inference never uses
    assert results['model']['params'] - results['model']['params_used'] > 464 * 1024
    saved = read_checkpoint(tmp_path / 'job' / 'epoch_1.pth')
    assert any(k.startswith('aux_head.') for k in saved['state_dict'])
    assert any(k.startswith('ema_') or 'ema' in k for k in saved) or 'ema_state_dict' in saved
