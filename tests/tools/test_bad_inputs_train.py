"""Every model / training tool fails safely: bad inputs end with one ``error:`` line naming the culprit, exit status 2,
no traceback, and nothing written (tools/train.py, tools/test.py, convert_weights.py, dist_*.sh, the backbones).

The tool runs are table-driven: each :class:`Case` prepares its own folder, runs the tool as a user would (a
subprocess from the repository root) and is checked with :func:`helpers.assert_clean_failure`. The runs are started
together by one module fixture (a few at a time), since each pays the mmdet import (seconds) on a small machine.
"""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest
import torch

from bad_inputs import OpenOnLoad
from helpers import REPO, assert_clean_failure, build_backbone, tree_snapshot
from tiny_mini_coco import make_dataset, write_config
from zygote import run_python

pytestmark = pytest.mark.slow  # tool runs, exports, training: make test-fast leaves these out

CONVERT = 'tools/model_converters/convert_weights.py'
CONVERT_ARGS = ['--src', 'torchvision', '--type', 'ShuffleNetV2', '--widen-factor', '0.5']


def dead_pid() -> int:
    """The pid of a process that has exited (what a writer killed with SIGKILL leaves in its temp file names)."""
    proc = subprocess.Popen([sys.executable, '-c', 'pass'])
    proc.wait()
    return proc.pid


@dataclass
class Shared:
    """Inputs every case may read (never written by a case): config, checkpoints, a backbone state dict."""
    root: Path
    config: Path
    good: Path      # the config's detector
    narrow: Path    # ShuffleNetV2 0.5x backbone (other width)
    classes: Path   # 7 classes instead of 4
    backbone: Path  # a ShuffleNetV2 0.5x state dict in the torchvision layout (converter input)
    before: dict = field(default_factory=dict)  # tree_snapshot(root) before the cases ran


@dataclass
class Case:
    """``prepare(folder, shared) -> (argv, names)``; argv[0] ending in ``.sh`` runs with bash, else with python."""
    id: str
    prepare: Callable[[Path, Shared], tuple[list[str], list[str]]]
    env: dict[str, str] = field(default_factory=dict)
    code: int = 2


def _detector_checkpoints(shared_root: Path, config: Path) -> dict[str, Path]:
    from mmdet.registry import MODELS

    from shufflenet_det.utils.build import load_config
    cfg = load_config(str(config))
    variants = {'good': {}, 'narrow': dict(backbone=dict(widen_factor=0.5), neck=dict(in_channels=[48, 96, 192])),
                'classes': dict(bbox_head=dict(num_classes=7))}
    paths = {}
    for name, changes in variants.items():
        model_cfg = copy.deepcopy(cfg.model)
        for part, values in changes.items():
            model_cfg[part].update(values)
        torch.manual_seed(0)
        paths[name] = shared_root / f'{name}_detector.pth'
        torch.save({'state_dict': MODELS.build(model_cfg).state_dict(), 'meta': {}}, paths[name])
    return paths


# ------------------------------------------------------------------------------------------------ case builders
def convert_same_path(spelling: str):
    def prepare(folder: Path, shared: Shared):
        src = folder / 'in.pth'
        src.write_bytes(shared.backbone.read_bytes())
        if spelling == 'relative':  # the tools run from the repository root: a relative spelling of the same file
            out = os.path.relpath(src, REPO)
        else:
            (folder / 'link.pth').symlink_to(src)
            out = str(folder / 'link.pth')
        return [CONVERT, *CONVERT_ARGS, str(src), out, '--overwrite'], [out, 'is the input checkpoint']
    return prepare


def convert_existing_output(folder: Path, shared: Shared):
    out = folder / 'out.pth'
    out.write_bytes(b'an earlier conversion')
    return [CONVERT, *CONVERT_ARGS, str(shared.backbone), str(out)], [str(out), 'already exists', '--overwrite']


def convert_bad_input(content: str):
    def prepare(folder: Path, shared: Shared):
        src = folder / f'{content}.pth'
        if content == 'text':
            src.write_text('this is not a checkpoint\n')
        elif content == 'empty':
            src.write_bytes(b'')
        elif content == 'truncated':
            data = shared.backbone.read_bytes()
            src.write_bytes(data[:len(data) // 2])
        out = folder / 'out.pth'
        return [CONVERT, *CONVERT_ARGS, str(src), str(out)], [str(src), 'is not a readable PyTorch checkpoint']
    return prepare


def tool_with_checkpoint(tool: str, which: str, expected: str, extra: tuple[str, ...] = ()):
    """tools/test.py CONFIG CKPT / tools/train.py CONFIG --resume CKPT / load_from=CKPT with a shared checkpoint."""
    def prepare(folder: Path, shared: Shared):
        ckpt = str(getattr(shared, which))
        wd = ['--work-dir', str(folder / 'wd')]
        if tool == 'test':
            argv = ['tools/test.py', str(shared.config), ckpt, *wd]
        elif tool == 'resume':
            argv = ['tools/train.py', str(shared.config), '--resume', ckpt, *wd]
        else:
            argv = ['tools/train.py', str(shared.config), *wd, '--cfg-options', f'load_from={ckpt}']
        return argv + list(extra), [ckpt, expected]
    return prepare


def tool_with_pickle_bomb(tool: str):
    def prepare(folder: Path, shared: Shared):
        ckpt = folder / 'bomb.pth'
        torch.save({'state_dict': {'w': torch.zeros(1)}, 'meta': OpenOnLoad(folder / 'marker')}, ckpt)
        wd = ['--work-dir', str(folder / 'wd')]
        argv = (['tools/test.py', str(shared.config), str(ckpt), *wd] if tool == 'test'
                else ['tools/train.py', str(shared.config), *wd, '--cfg-options', f'load_from={ckpt}'])
        return argv, [str(ckpt), 'weights_only=True']
    return prepare


def train_with(options: list[str], expected: list[str], flags: tuple[str, ...] = ()):
    def prepare(folder: Path, shared: Shared):
        argv = ['tools/train.py', str(shared.config), '--work-dir', str(folder / 'wd'), *flags]
        return argv + (['--cfg-options', *options] if options else []), expected
    return prepare


def train_config(kind: str):
    def prepare(folder: Path, shared: Shared):
        cfg = folder / 'cfg.py'
        if kind == 'broken':
            cfg.write_text(f"_base_ = {str(shared.config)!r}\nmodel = dict(\n    backbone=dict(widen_factor=0.5)\n")
            names = [str(cfg), 'line 2']
        else:
            names = [str(cfg), 'does not exist']
        return ['tools/train.py', str(cfg), '--work-dir', str(folder / 'wd')], names
    return prepare


def train_damaged_data(damage: str):
    """A private tiny dataset whose annotations name a missing image, or with a text file saved as an image."""
    def prepare(folder: Path, shared: Shared):
        data = make_dataset(folder / 'mini')
        ann = data / 'annotations' / 'instances_train2017.json'
        coco = json.loads(ann.read_text())
        if damage == 'missing_image':
            coco['images'][3]['file_name'] = 'not_there.png'
            ann.write_text(json.dumps(coco))
            names = [str(ann), 'not_there.png', 'missing']
        else:
            image = data / 'train2017' / coco['images'][5]['file_name']
            image.write_text('<html>404 Not Found</html>')
            names = [str(image), 'is not an image file']
        cfg = write_config(folder / 'cfg.py', data, max_epochs=1)
        return ['tools/train.py', str(cfg), '--work-dir', str(folder / 'wd')], names
    return prepare


def dist_script(script: str, gpus: str):
    def prepare(folder: Path, shared: Shared):
        args = [str(shared.config)] + ([str(shared.good)] if script == 'dist_test.sh' else []) + [gpus]
        return [f'tools/{script}', *args], ['GPUS', repr(gpus)]
    return prepare


CASES = [
    # convert_weights.py: OUT = IN (refused even with --overwrite; more spellings in test_same_file_spellings), an
    # existing OUT, unreadable IN (exit status 1: the documented "conversion refused")
    *[Case(f'convert-same-path-{s}', convert_same_path(s)) for s in ('relative', 'symlink')],
    Case('convert-existing-output', convert_existing_output),
    *[Case(f'convert-{c}-input', convert_bad_input(c), code=1) for c in ('text', 'empty', 'truncated')],
    # tools/test.py and tools/train.py: checkpoints of another model, unsafe checkpoints
    Case('test-other-width', tool_with_checkpoint('test', 'narrow', 'shape mismatches')),
    Case('test-other-classes', tool_with_checkpoint('test', 'classes', 'bbox_head.retina_cls.weight')),
    Case('train-resume-other-width', tool_with_checkpoint('resume', 'narrow', 'Resuming continues the run')),
    Case('train-load-from-other-classes', tool_with_checkpoint('load', 'classes', '--partial-load')),
    Case('test-pickle-payload', tool_with_pickle_bomb('test'), env={'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD': '1'}),
    # model arguments, checked before the Runner builds anything (the other argument errors: in-process below)
    Case('train-neck-channels', train_with(['model.neck.in_channels=[100,232,464]'],
                                           ['model.neck.in_channels', '[100, 232, 464]', '[116, 232, 464]'])),
    Case('train-v1-float-groups', train_with(['model.backbone.type=ShuffleNetV1', 'model.backbone.groups=3.0'],
                                             ['groups=3.0', 'must be an int', '[1, 2, 3, 4, 8]'])),
    Case('train-gn-without-num-groups', train_with(['model.backbone.norm_cfg.type=GN'], ['norm_cfg', 'num_groups'])),
    Case('train-amp-without-cuda', train_with([], ['--amp', 'CUDA'], flags=('--amp',))),
    # configs and data
    Case('train-missing-config', train_config('missing')),
    Case('train-broken-config', train_config('broken')),
    Case('train-missing-image', train_damaged_data('missing_image')),
    Case('train-non-image-file', train_damaged_data('not_an_image')),
    # launch scripts (bash only: they stop before python starts)
    *[Case(f'{s[:-3]}-gpus-{g}', dist_script(s, g)) for s in ('dist_train.sh', 'dist_test.sh') for g in ('abc', '0')],
]
if torch.cuda.is_available():  # --amp is valid there
    CASES = [c for c in CASES if c.id != 'train-amp-without-cuda']


def _run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    full_env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore', PYTHON=sys.executable, **env)
    full_env.pop('SHUFFLENET_DET_DEBUG', None)
    if not argv[0].endswith('.sh'):
        return run_python(argv, env=full_env)
    return subprocess.run(['bash', *argv], cwd=REPO, env=full_env, capture_output=True, text=True, timeout=300)


@dataclass
class Outcome:
    proc: subprocess.CompletedProcess
    names: list[str]
    folder: Path
    before: dict


@pytest.fixture(scope='module')
def shared(tiny_coco, tmp_path_factory) -> Shared:
    root = tmp_path_factory.mktemp('shared')
    config = write_config(root / 'tiny_retinanet.py', tiny_coco, max_epochs=1)
    ckpts = _detector_checkpoints(root, config)
    backbone = root / 'shufflenetv2_x0.5_torchvision.pth'
    torch.save(build_backbone(dict(type='ShuffleNetV2', widen_factor=0.5, out_indices=(4,))).state_dict(), backbone)
    return Shared(root, config, ckpts['good'], ckpts['narrow'], ckpts['classes'], backbone)


def debug_run(folder: Path, shared: Shared):
    return ['tools/train.py', str(folder / 'missing.py'), '--debug'], []


def overwrite_run(folder: Path, shared: Shared):
    out = folder / 'out.pth'
    out.write_bytes(b'an earlier conversion')
    return [CONVERT, *CONVERT_ARGS, str(shared.backbone), str(out), '--overwrite'], []


def partial_load_run(folder: Path, shared: Shared):
    return ['tools/test.py', str(shared.config), str(shared.classes), '--work-dir', str(folder / 'wd'),
            '--partial-load'], []


def stale_temp_run(folder: Path, shared: Shared):
    """A work dir holding what writers killed with SIGKILL leave (``.epoch_1.pth.<dead pid>.<random>.tmp``), and a
    live writer's temp file; training one epoch from a fitting ``load_from`` (no validation)."""
    wd = folder / 'wd'
    wd.mkdir()
    pid = dead_pid()
    for name in (f'.epoch_1.pth.{pid}.k1ll3d.tmp', f'.last_checkpoint.{pid}.k1ll3d.tmp',
                 f'.epoch_1.pth.{os.getpid()}.wr1t1ng.tmp'):
        (wd / name).write_bytes(b'half a checkpoint')
    return ['tools/train.py', str(shared.config), '--work-dir', str(wd), '--cfg-options', f'load_from={shared.good}',
            'train_cfg.val_interval=2'], []


#: Runs that must succeed (or, for ``debug``, show a traceback), started in the same pool as the cases.
RUNS = [Case('stale-temp', stale_temp_run), Case('partial-load', partial_load_run), Case('overwrite', overwrite_run),
        Case('debug', debug_run)]


@pytest.fixture(scope='module')
def outcomes(shared, tmp_path_factory) -> dict[str, Outcome]:
    """Run every case and run (a few at a time, the slowest first); ``id -> Outcome``."""
    base = tmp_path_factory.mktemp('cases')
    shared.before = tree_snapshot(shared.root)
    prepared = {}
    for case in RUNS + CASES:
        folder = base / case.id
        folder.mkdir()
        argv, names = case.prepare(folder, shared)
        prepared[case.id] = (argv, names, folder, tree_snapshot(folder))
    workers = max(1, min(4, os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:
        futures = {case.id: pool.submit(_run, prepared[case.id][0], case.env) for case in RUNS + CASES}
        return {cid: Outcome(f.result(), *prepared[cid][1:]) for cid, f in futures.items()}


@pytest.mark.parametrize('case', CASES, ids=[c.id for c in CASES])
def test_tool_fails_cleanly(case: Case, outcomes) -> None:
    out = outcomes[case.id]
    assert_clean_failure(out.proc, out.names, out.folder, out.before, code=case.code)
    assert not (out.folder / 'wd').exists()
    assert not (out.folder / 'marker').exists(), 'the checkpoint ran code while being loaded'


def test_shared_inputs_untouched(shared, outcomes) -> None:
    """No case wrote next to (or into) the config and the checkpoints it was given."""
    assert outcomes and tree_snapshot(shared.root) == shared.before


def test_debug_shows_the_traceback(outcomes) -> None:
    proc = outcomes['debug'].proc
    assert proc.returncode == 2 and 'Traceback' in proc.stderr and 'missing.py' in proc.stderr
    assert 'ConfigError' in proc.stderr


def test_same_file_spellings(tmp_path) -> None:
    """OUT = IN is recognised however it is spelled; distinct files are not."""
    from shufflenet_det.utils.io import same_file
    src = tmp_path / 'in.pth'
    src.write_bytes(b'x')
    (tmp_path / 'sub').mkdir()
    (tmp_path / 'link.pth').symlink_to(src)
    os.link(src, tmp_path / 'hard.pth')
    (tmp_path / 'other.pth').write_bytes(b'x')
    for spelling in (src, f'{tmp_path}/sub/../in.pth', f'{tmp_path}//./in.pth', tmp_path / 'link.pth',
                     tmp_path / 'hard.pth', os.path.relpath(src)):
        assert same_file(src, spelling), spelling
    assert not same_file(src, tmp_path / 'other.pth') and not same_file(src, tmp_path / 'new.pth')


# ------------------------------------------------------------------------------------------------ what still works
def test_convert_overwrite_replaces_an_existing_output(outcomes) -> None:
    out = outcomes['overwrite']
    assert out.proc.returncode == 0, out.proc.stderr
    saved = torch.load(out.folder / 'out.pth', weights_only=True)
    assert saved['meta']['backbone'] == dict(type='ShuffleNetV2', widen_factor=0.5)
    assert sorted(p.name for p in out.folder.iterdir()) == ['out.pth']


def test_partial_load_is_explicit(outcomes) -> None:
    """--partial-load evaluates a checkpoint with another class count, and says what did not fit."""
    proc = outcomes['partial-load'].proc
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert 'partial load' in log and 'bbox_head.retina_cls.weight' in log and 'coco/bbox_mAP' in log


def test_next_checkpoint_write_removes_temp_files_of_killed_writers(outcomes) -> None:
    """The next run's checkpoint write into the folder (AtomicCheckpointHook -> utils.io) removes the temp files of
    killed writers and keeps a live writer's; a fitting ``load_from`` passes the checks."""
    out = outcomes['stale-temp']
    assert out.proc.returncode == 0, out.proc.stderr[-3000:]
    wd = out.folder / 'wd'
    assert (wd / 'epoch_1.pth').is_file() and (wd / 'last_checkpoint').is_file()
    temps = sorted(p.name for p in wd.iterdir() if p.name.endswith('.tmp'))
    assert temps == [f'.epoch_1.pth.{os.getpid()}.wr1t1ng.tmp'], temps


# ------------------------------------------------------------------------------------------------ backbone arguments
@pytest.mark.parametrize('cfg, names', [
    (dict(type='ShuffleNetV1', groups=3.0), ['groups=3.0', 'must be an int', '[1, 2, 3, 4, 8]']),
    (dict(type='ShuffleNetV1', groups=True), ['groups=True', 'bool']),
    (dict(type='ShuffleNetV2', out_indices=(3, 1, 3)), ['out_indices=(3, 1, 3)', '[3] given more than once']),
    (dict(type='ShuffleNetV2', out_indices=(5,)), ['out_indices=(5,)', '[5]', '[0, 1, 2, 3, 4]']),
    (dict(type='ShuffleNetV2', out_indices=3), ['out_indices=3', 'non-empty sequence']),
    (dict(type='ShuffleNetV2', norm_cfg=dict(type='BatchNorm2')),
     ["'BatchNorm2'", "['BN', 'SyncBN', 'GN', 'LN', 'IN']"]),
    (dict(type='ShuffleNetV2', act_cfg=dict(type='Relu')), ["'Relu'", "'ReLU'"]),
    (dict(type='ShuffleNetV2', norm_cfg=dict(type='GN')), ['num_groups', "dict(type='GN', num_groups=4)"]),
    (dict(type='DetNAS', arch='COCO-FPN-300M', norm_cfg=dict(type='GN')), ['num_groups']),
], ids=['v1-float-groups', 'v1-bool-groups', 'duplicate-indices', 'index-out-of-range', 'int-indices',
        'unknown-norm', 'unknown-act', 'gn-v2', 'gn-detnas'])
def test_backbone_arguments_are_named(cfg, names) -> None:
    with pytest.raises(ValueError) as exc:
        build_backbone(cfg)
    message = str(exc.value)
    for name in names:
        assert name in message, message
    assert len(message) < 600, 'the message must name the common choices, not dump the registry'


@pytest.mark.parametrize('family', [dict(type='ShuffleNetV1', groups=3), dict(type='ShuffleNetV2')],
                         ids=lambda c: c['type'])  # every family: test_backbone_contract
def test_unsorted_out_indices_follow_the_documented_order(family) -> None:
    """docs/backbones.md: out_channels / out_strides in ``out_indices`` order, outputs in increasing stride order -
    indices given as (3, 1) become ``out_indices == (1, 3)`` and everything the backbone reports follows that order."""
    given = build_backbone(dict(family, out_indices=(3, 1))).eval()
    ordered = build_backbone(dict(family, out_indices=(1, 3))).eval()
    assert given.out_indices == ordered.out_indices == (1, 3)
    assert given.out_channels == ordered.out_channels and given.out_strides == (8, 32)
    with torch.no_grad():
        outs = given(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == list(given.out_channels)
    assert [64 // o.shape[-1] for o in outs] == list(given.out_strides)


def test_integral_widths_still_accepted() -> None:
    """The stricter type check refuses float group counts, not an int width that equals an allowed float."""
    assert build_backbone(dict(type='ShuffleNetV2', widen_factor=1)).out_channels == (116, 232, 464)
