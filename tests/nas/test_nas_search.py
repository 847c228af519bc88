"""The DetNAS pipeline end to end on a tiny detector: held-out split (tools/nas/split_coco.py), supernet training with
the normal tools/train.py, a 2-generation search (tools/nas/search.py) whose found detector config and inherited
checkpoint load strictly and compute what was scored, and a search killed after generation 1 that resumes to the
uninterrupted result."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from helpers import assert_close_scaled
from nas_fixtures import SPACE, write_search_config
from shufflenet_det.apps.nas_search import SearchError, build_scorer, parse_settings, run_search
from shufflenet_det.nas.evaluate import evaluate
from shufflenet_det.nas.flops import PathFlops
from shufflenet_det.utils.build import build_detector, load_config
from shufflenet_det.utils.checkpoint import read_checkpoint, read_state_dict
from shufflenet_det.utils.cli import ToolError
from tiny_mini_coco import REPO, load_script, make_dataset, run_tool

pytestmark = pytest.mark.slow  # tool runs, exports, training: make test-fast leaves these out

KEYS = ('key', 'path', 'flops', 'score', 'metrics', 'generation', 'origin')


@pytest.fixture(scope='module')
def trained(tmp_path_factory) -> dict:
    """Tiny data, its held-out split (the tool, in-process), and a supernet trained for one epoch by tools/train.py."""
    tmp = tmp_path_factory.mktemp('nas')
    data = make_dataset(tmp / 'mini')
    ann = data / 'annotations' / 'instances_train2017.json'
    assert load_script('tools/nas/split_coco.py').main([str(ann), '--num-val', '6']) == 0
    held = json.loads((data / 'annotations' / 'instances_train2017_nas-val.json').read_text())
    rest = json.loads((data / 'annotations' / 'instances_train2017_nas-train.json').read_text())
    assert len(held['images']) == 6 and len(rest['images']) == 10
    counter = PathFlops(dict(backbone=dict(type='DetNASSupernet', space=SPACE, out_indices=(1, 2, 3))), 'backbone', 64)
    pure = [counter((c,) * 5) for c in range(4)]
    config = write_search_config(tmp / 'tiny_search.py', data, flops_limit=(min(pure) + max(pure)) / 2)
    done = run_tool(['tools/train.py', str(config), '--work-dir', str(tmp / 'supernet')])
    assert done.returncode == 0, done.stderr[-3000:]
    # 10 training images / batch 2: the supernet trained on the split, not on the held-out images
    assert 'Epoch(train) [1][5/5]' in done.stdout + done.stderr
    return dict(tmp=tmp, data=data, config=config, checkpoint=tmp / 'supernet' / 'epoch_1.pth',
                limit=(min(pure) + max(pure)) / 2)


def search_cli(trained: dict, work: Path, *extra: str) -> list[str]:
    return ['tools/nas/search.py', str(trained['config']), str(trained['checkpoint']), '--work-dir', str(work),
            '--threads', '1', *extra]


def comparable(log: dict) -> dict:
    return dict(candidates=[{k: c[k] for k in KEYS} for c in log['candidates']], history=log['history'],
                top_k=log['top_k'], best={k: log['best'][k] for k in KEYS + ('arch',)})


@pytest.fixture(scope='module')
def searched(trained) -> dict:
    work = trained['tmp'] / 'search'
    done = run_tool(search_cli(trained, work))
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(trained, work=work, out=done.stdout, log=json.loads((work / 'search_log.json').read_text()))


def test_search_end_to_end(searched):
    work, log = searched['work'], searched['log']
    assert '[nas search] generation 2/2' in searched['out'] and '4/4' in searched['out']  # progress bar
    assert log['generations_done'] == 2 and [h['generation'] for h in log['history']] == [0, 1]
    cands = log['candidates']
    assert {c['generation'] for c in cands} == {0, 1} and len({c['key'] for c in cands}) == len(cands)
    assert all(c['flops'] <= searched['limit'] for c in cands)  # the budget filter
    assert {c['origin'] for c in cands if c['generation'] == 1} <= {'mutation', 'crossover', 'random'}
    assert all('coco/bbox_mAP' in c['metrics'] and 0 <= c['score'] <= 1 for c in cands)
    ranked = sorted(cands, key=lambda c: (-c['score'], c['flops'], c['key']))
    assert log['best']['key'] == ranked[0]['key'] == log['top_k'][0]
    assert (work / 'search.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    state = json.loads((work / 'search_state.json').read_text())
    assert state['search']['generation'] == 2 and not list(work.glob('.*.tmp'))


def test_found_detector_loads_strictly_and_computes_what_was_scored(searched):
    work, best = searched['work'], searched['log']['best']
    cfg = load_config(work / 'best_config.py')
    assert cfg.model.backbone.type == 'DetNAS' and cfg.model.backbone.arch == best['arch']
    assert cfg.model.backbone.arch['choices'] == best['path'] and cfg.model.backbone.init_cfg is None
    assert 'nas_search' not in cfg and all(h['type'] != 'UniformPathSamplerHook' for h in cfg.custom_hooks)
    assert 'find_unused_parameters' not in cfg
    meta = read_checkpoint(work / 'best_subnet.pth')['meta']['nas']
    assert meta['key'] == best['key'] and meta['arch'] == best['arch']
    exported = build_detector(work / 'best_config.py', work / 'best_subnet.pth')  # strict: every key and shape

    search_cfg = load_config(searched['config'])
    scorer = build_scorer(search_cfg, parse_settings(search_cfg, str(searched['config'])),
                          read_state_dict(searched['checkpoint']))
    scorer.prepare(best['path'])  # the supernet on the best path, BN recalibrated as when it was scored
    batch = next(iter(scorer.val_loader))
    with torch.no_grad():
        data = scorer.model.data_preprocessor(batch, training=False)
        ours = scorer.model(**data, mode='tensor')
        theirs = exported(**exported.data_preprocessor(batch, training=False), mode='tensor')
    flat = [t for level in ours for t in level]
    assert len(flat) == len([t for level in theirs for t in level]) > 0
    # the supernet on the path and the exported DetNAS run the same layers with the same (recalibrated) weights:
    # equal up to another kernel's rounding, a few float32 eps (1.2e-7) per layer of the magnitude S; allowed 1e-5
    # of max(1, S) + 1e-5 of each element, while another path or unrecalibrated BN changes outputs by O(S)
    for a, b in zip(flat, [t for level in theirs for t in level]):
        assert_close_scaled(b, a, atol=1e-5, rtol=1e-5)
    metrics = evaluate(exported, scorer.val_loader, scorer.evaluator, scorer.num_samples)
    # The same metrics as scored by the search (another process, the supernet). Not exactly: this untrained
    # detector scores everything near its 0.01 prior (score_thr 0, max_per_img 20), so last-bit differences of
    # another computation or CPU can swap near-tied detections at the top-20 cut or in the ranking, moving its
    # (tiny) mAPs by a few hundredths at most. The outputs check above is the precise one.
    assert metrics.keys() == best['metrics'].keys()
    assert metrics == pytest.approx(best['metrics'], abs=0.05)


def test_resume_after_kill_equals_uninterrupted(searched):
    work = searched['tmp'] / 'killed'
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore')
    proc = subprocess.Popen([sys.executable, *search_cli(searched, work)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    state_file = work / 'search_state.json'
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if json.loads(state_file.read_text())['search']['generation'] >= 1:
                    break
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.02)
        assert proc.poll() is None, f'the search ended before it could be killed: {proc.stderr.read()[-2000:]}'
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(60)
    state = json.loads(state_file.read_text())
    assert state['search']['generation'] == 1 and not (work / 'best_config.py').exists()

    done = run_tool(search_cli(searched, work, '--resume'))
    assert done.returncode == 0, done.stderr[-3000:]
    assert 'resuming after generation 1 of 2' in done.stdout
    resumed = json.loads((work / 'search_log.json').read_text())
    assert comparable(resumed) == comparable(searched['log'])
    a = read_state_dict(work / 'best_subnet.pth')
    b = read_state_dict(searched['work'] / 'best_subnet.pth')
    # exact: the same tool on the same machine recomputes the same subnet and BN recalibration, op for op
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_bad_searches_fail_before_work(searched, tmp_path):
    config, ckpt = str(searched['config']), str(searched['checkpoint'])
    with pytest.raises(SearchError, match='already holds a search'):
        run_search(config, ckpt, work_dir=str(searched['work']), log=lambda *_: None)
    with pytest.raises(SearchError, match='nothing to continue'):
        run_search(config, ckpt, work_dir=str(tmp_path / 'new'), resume=True, log=lambda *_: None)
    with pytest.raises(SearchError, match='supernet checkpoint .* does not exist'):
        run_search(config, str(tmp_path / 'none.pth'), work_dir=str(tmp_path / 'a'), log=lambda *_: None)
    with pytest.raises(SearchError, match="must be 'DetNASSupernet'"):
        run_search(config, ckpt, work_dir=str(tmp_path / 'b'), log=lambda *_: None,
                   cfg_options={'model.backbone': dict(type='DetNAS', arch='COCO-FPN-300M')})
    with pytest.raises(SearchError, match='tools/nas/split_coco.py'):
        run_search(config, ckpt, work_dir=str(tmp_path / 'c'), log=lambda *_: None, cfg_options={
            'nas_search.val_dataloader.dataset.ann_file': 'annotations/missing.json'})
    with pytest.raises(SearchError, match='the settings differ'):  # another search setting under --resume
        run_search(config, ckpt, work_dir=str(searched['work']), resume=True, log=lambda *_: None,
                   cfg_options={'nas_search.top_k': 3})
    with pytest.raises(ValueError, match='does not fit'):  # a checkpoint of another model
        run_search(config, str(searched['work'] / 'best_subnet.pth'), work_dir=str(tmp_path / 'd'),
                   log=lambda *_: None)
    assert not any((tmp_path / d).exists() for d in 'abcd')
    # the command line raises the same errors, which run_main prints as one message (a ValueError: exit status 2)
    tool = load_script('tools/nas/search.py')
    with pytest.raises(SearchError, match='supernet checkpoint'):
        tool.main([config, str(tmp_path / 'none.pth'), '--work-dir', str(tmp_path / 'e')])
    with pytest.raises(ToolError, match='--threads must be >= 1'):
        tool.main([config, ckpt, '--threads', '0'])
    assert not (tmp_path / 'e').exists()
