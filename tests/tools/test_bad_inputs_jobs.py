"""The job tools refuse what would silently destroy data or produce a meaningless result.

Covered: tools/main_job.py (a generated dataset of another spec, --model with --config, --resume without a
checkpoint), tools/analysis_tools/side_by_side.py (--out over a job's results.json, another model's results reused,
a results.json without seconds per iteration), tools/nas/search.py (a metric the evaluator never reports, a budget no
path fits, a hand-edited resume state), tools/nas/split_coco.py (images without ids), ``python -m
shufflenet_det.apps.mmdet_tool`` (a missing config), tools/train.py (Pretrained init weights that are unsafe or of
another model) and ``--cfg-options`` values on train.py, main_job.py and export_onnx.py
(:mod:`shufflenet_det.utils.config_options`).

Each failing case checks what the tool error policy promises (:mod:`shufflenet_det.utils.cli`): a non-zero exit, one
``error:`` line naming the culprit, no traceback, and the work folder exactly as it was
(:func:`helpers.assert_clean_failure`), run in-process through the tool's own ``run_main`` (the pattern and helpers of
``test_bad_inputs_new_tools``).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from types import ModuleType
from typing import Iterator, Optional

import numpy as np
import pytest
import torch

from bad_inputs import OpenOnLoad, run_in_process
from helpers import assert_clean_failure, build_backbone, load_script, tree_snapshot
from tiny_mini_coco import TINY_SPEC, make_dataset, write_config

pytestmark = pytest.mark.slow  # tool runs, exports, training: make test-fast leaves these out

TOOLS = {'main_job': 'tools/main_job.py', 'side_by_side': 'tools/analysis_tools/side_by_side.py',
         'search': 'tools/nas/search.py', 'split': 'tools/nas/split_coco.py', 'train': 'tools/train.py',
         'export': 'tools/deploy/export_onnx.py', 'flops': 'tools/analysis_tools/get_flops.py'}
#: The work folder names of the lite-m and lite-s mini jobs (``<runs dir>/<config name>``).
LITE_M, LITE_S = 'lite-m_shufflenetv2-1x_mini-coco', 'lite-s_shufflenetv2-0.5x_mini-coco'


def results_doc(config: str, work_dir: Path, seconds_per_iter: Optional[float]) -> dict:
    """A results.json of tools/main_job.py (what :func:`shufflenet_det.apps.mini_job.run_job` writes)."""
    return dict(config=config, work_dir=str(work_dir),
                dataset=dict(root='data/mini_coco', generated=False, seconds=0.1, spec=TINY_SPEC.to_dict()),
                metrics=dict(bbox_mAP=0.5, bbox_mAP_50=0.75, bbox_mAP_75=0.5),
                train=dict(epochs=2, iterations=0, batch_size=2, seconds=0.5, seconds_per_iter=seconds_per_iter),
                model=dict(params=2_000_000, params_used=1_900_000, flops=300_000_000, flops_input=[1, 3, 64, 64]),
                picture=None, job_seconds=3.0,
                environment=dict(torch=torch.__version__, threads=1, cpus=2, processor='x86_64', load_average=None))


def write_runs(runs: Path, m_config: str, seconds_per_iter: Optional[float] = None) -> None:
    """Finished lite-m and lite-s jobs under ``runs``; the lite-m folder's results name ``m_config``."""
    for name, config in ((LITE_M, m_config), (LITE_S, f'configs/mini/{LITE_S}.py')):
        (runs / name).mkdir(parents=True)
        (runs / name / 'results.json').write_text(json.dumps(results_doc(config, runs / name, seconds_per_iter)))


def search_state(**change) -> str:
    """A search_state.json of the 5-unit test space with ``change`` applied to its ``search`` part."""
    from shufflenet_det.nas.evolution import SearchState
    state = SearchState(population=[[0, 1, 2, 3, 0]], origins=['random'],
                        rng=np.random.default_rng(0).bit_generator.state).to_dict()
    return json.dumps(dict(version=1, fingerprint={}, search=dict(state, **change)))


@pytest.fixture(scope='module')
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One work folder with the inputs of every case (no case may change it)."""
    from nas_fixtures import write_search_config
    from shufflenet_det.nas.data import write_coco_split
    from shufflenet_det.utils.build import build_detector
    root = tmp_path_factory.mktemp('bad_jobs')
    data = make_dataset(root / 'mini')  # a generated dataset of the tiny spec, not the main job's
    write_config(root / 'tiny.py', data)
    (root / 'empty_wd').mkdir()
    # side by side: finished runs (no seconds per iteration: a resume that trained nothing), and a lite-m folder
    # holding the results of a lite-s job
    write_runs(root / 'runs', f'configs/mini/{LITE_M}.py')
    write_runs(root / 'runs_swapped', f'configs/mini/{LITE_S}.py', seconds_per_iter=0.25)
    # the search: the tiny supernet, its held-out split, hand-edited resume states
    write_coco_split(data / 'annotations' / 'instances_train2017.json', 6)
    write_search_config(root / 'search.py', data, flops_limit=None)
    torch.save({'state_dict': build_detector(root / 'search.py').state_dict()}, root / 'supernet.pth')
    for name, change in (('state_generation', dict(generation='one')),
                         ('state_choice', dict(population=[[0, 1, 7, 3, 0]]))):
        (root / name).mkdir()
        (root / name / 'search_state.json').write_text(search_state(**change))
    coco = json.loads((data / 'annotations' / 'instances_train2017.json').read_text())
    del coco['images'][2]['id']
    (root / 'noid.json').write_text(json.dumps(coco))
    # Pretrained init weights: the right backbone, a narrower one, a detector's (no key matches), a pickle payload
    v2 = dict(type='ShuffleNetV2', widen_factor=1.0, out_indices=(1, 2, 3))
    torch.save({'state_dict': build_backbone(v2).state_dict()}, root / 'v2_1x.pth')
    torch.save({'state_dict': build_backbone(dict(v2, widen_factor=0.5)).state_dict()}, root / 'v2_05x.pth')
    torch.save({'state_dict': {'w': torch.zeros(1)}, 'meta': OpenOnLoad(root / 'marker')}, root / 'bomb.pth')
    for name, ckpt in (('fits', 'v2_1x.pth'), ('narrow', 'v2_05x.pth'), ('detector', 'supernet.pth'),
                       ('bomb', 'bomb.pth')):
        (root / f'pretrained_{name}.py').write_text(
            f"_base_ = {str(root / 'tiny.py')!r}\nmodel = dict(backbone=dict(init_cfg=dict(_delete_=True, "
            f"type='Pretrained', checkpoint={str(root / ckpt)!r})))\n")
    yield root


@pytest.fixture(scope='module')
def tools() -> dict[str, ModuleType]:
    return {name: load_script(path, f'bad_jobs_{name}') for name, path in TOOLS.items()}


@pytest.fixture(autouse=True)
def local_rank(monkeypatch) -> None:
    """tools/train.py sets LOCAL_RANK when it is unset (start_tool): keep the test process's environment as it was."""
    monkeypatch.setenv('LOCAL_RANK', os.environ.get('LOCAL_RANK', '0'))


# ------------------------------------------------------------------------------------------------------ the cases
def _cases() -> list[tuple[str, str, list[str], list[str]]]:
    """``(id, tool, argv ({ws} = the work folder), strings the message must name)``."""
    job = ['--work-dir', '{ws}/job', '--data-root', '{ws}/mini']
    sbs = ['--models', 'lite', 'lite-s', '--reuse', '--timing-rounds', '0', '--data-root', '{ws}/no_data']
    search = ['{ws}/search.py', '{ws}/supernet.pth']
    train = ['{ws}/tiny.py', '--work-dir', '{ws}/wd', '--cfg-options']
    return [
        # 1: a generated dataset of another size is the user's data
        ('mj-dataset-of-another-spec', 'main_job', ['--model', 'lite-s', *job],
         ['--data-root', 'mini', 'num_train=16 (this job needs 400)', '--overwrite']),
        # 3, 4: side by side
        ('sbs-out-is-a-results-file', 'side_by_side', [*sbs, '--runs-dir', '{ws}/runs', '--out',
                                                       f'{{ws}}/runs/{LITE_M}/results.json'],
         ['--out', f'{LITE_M}/results.json', 'lite job']),
        ('sbs-reuse-results-of-another-model', 'side_by_side', [*sbs, '--runs-dir', '{ws}/runs_swapped', '--out',
                                                                '{ws}/s.json'],
         [f'runs_swapped/{LITE_M}/results.json', 'the lite-s model', 'not of lite ']),
        # 5, 9: the search
        ('s-metric-never-reported', 'search', [*search, '--work-dir', '{ws}/sw', '--cfg-options',
                                               'nas_search.metric=coco/bbox_mAPP'],
         ["nas_search.metric='coco/bbox_mAPP'", "'coco/bbox_mAP'", "'coco/bbox_mAP_50'"]),
        ('s-no-path-fits-the-budget', 'search', [*search, '--work-dir', '{ws}/sw', '--cfg-options',
                                                 'nas_search.flops_limit=1'],
         ['flops_limit=1', 'smallest path', 'multiply-adds']),
        ('s-state-generation-a-string', 'search', [*search, '--resume', '--work-dir', '{ws}/state_generation'],
         ['state_generation/search_state.json', "generation='one'"]),
        ('s-state-choice-out-of-range', 'search', [*search, '--resume', '--work-dir', '{ws}/state_choice'],
         ['state_choice/search_state.json', 'population[0][2]=7']),
        ('sp-image-without-id', 'split', ['{ws}/noid.json', '--num-val', '2'], ['noid.json', 'images[2]', '"id"']),
        # 6, 7: main job options
        ('mj-model-and-config', 'main_job', ['--model', 'lite-s', '--config', '{ws}/tiny.py', *job],
         ['--model lite-s', '--config', 'tiny.py']),
        ('mj-resume-empty-work-dir', 'main_job', ['--model', 'lite-s', '--resume', '--work-dir', '{ws}/empty_wd',
                                                  '--data-root', '{ws}/mini'], ['--resume', '--work-dir', 'empty_wd']),
        # 10: mmdet's own tools through the plugin
        ('mmdet-tool-config-missing', 'mmdet_tool', ['train', '{ws}/missing.py'], ['missing.py', 'does not exist']),
        # 11: Pretrained init weights
        ('train-pretrained-pickle-payload', 'train', ['{ws}/pretrained_bomb.py', '--work-dir', '{ws}/wd'],
         ['bomb.pth', 'weights_only=True', 'model.backbone.init_cfg']),
        ('train-pretrained-other-width', 'train', ['{ws}/pretrained_narrow.py', '--work-dir', '{ws}/wd'],
         ['v2_05x.pth', 'shape mismatches', '--partial-load']),
        ('train-pretrained-no-key-matches', 'train', ['{ws}/pretrained_detector.py', '--work-dir', '{ws}/wd'],
         ['supernet.pth', 'missing keys', 'unexpected keys', '--partial-load']),
        # 12: --cfg-options values
        ('train-num-classes-not-a-number', 'train', [*train, 'model.bbox_head.num_classes=abc'],
         ["--cfg-options model.bbox_head.num_classes='abc'", 'int >= 1']),
        ('train-max-epochs-0', 'train', [*train, 'train_cfg.max_epochs=0'],
         ['--cfg-options train_cfg.max_epochs=0', 'int >= 1']),
        ('train-merge-into-none', 'train', [*train, 'model.backbone.init_cfg.type=Pretrained'],
         ['model.backbone.init_cfg.type', 'model.backbone.init_cfg is None',
          'model.backbone.init_cfg._delete_=True model.backbone.init_cfg.type=Pretrained '
          'model.backbone.init_cfg.checkpoint=']),
        ('mj-max-epochs-not-a-number', 'main_job', ['--config', '{ws}/tiny.py', *job, '--cfg-options',
                                                    'train_cfg.max_epochs=abc'],
         ["--cfg-options train_cfg.max_epochs='abc'", 'int >= 1']),
        ('export-num-classes-not-a-number', 'export', ['--config', '{ws}/tiny.py', '--out', '{ws}/x.onnx',
                                                       '--cfg-options', 'model.bbox_head.num_classes=abc'],
         ['model.bbox_head.num_classes', 'int >= 1']),
        ('export-score-thr-above-1', 'export', ['--config', '{ws}/tiny.py', '--out', '{ws}/x.onnx',
                                                '--cfg-options', 'model.test_cfg.score_thr=5'],
         ['--cfg-options model.test_cfg.score_thr=5', 'in [0, 1]']),
        ('train-iou-threshold-not-a-number', 'train', [*train, 'model.test_cfg.nms.iou_threshold=high'],
         ['model.test_cfg.nms.iou_threshold', 'in [0, 1]']),
        # channels that do not fit: named before the export / FLOP count builds anything further
        ('export-neck-channels', 'export', ['--config', '{ws}/tiny.py', '--out', '{ws}/x.onnx',
                                            '--cfg-options', 'model.neck.in_channels=[1,2,3]'],
         ['model.neck.in_channels is [1, 2, 3]', 'tiny.py']),
        ('flops-neck-channels', 'flops', ['{ws}/tiny.py', '--cfg-options', 'model.neck.in_channels=[1,2,3]'],
         ['model.neck.in_channels is [1, 2, 3]', 'tiny.py']),
    ]


def _tool(tools: dict[str, ModuleType], name: str) -> ModuleType:
    if name == 'mmdet_tool':
        from shufflenet_det.apps import mmdet_tool
        return mmdet_tool
    return tools[name]


@pytest.mark.parametrize('tool,argv,names', [pytest.param(t, a, n, id=i) for i, t, a, n in _cases()])
def test_bad_input_fails_cleanly(ws: Path, tools: dict[str, ModuleType], capsys, tool: str, argv: list[str],
                                 names: list[str]) -> None:
    before = tree_snapshot(ws)
    proc = run_in_process(_tool(tools, tool), [a.replace('{ws}', str(ws)) for a in argv], capsys)
    assert_clean_failure(proc, names, ws, before, code=2)
    errors = [line for line in proc.stderr.splitlines() if 'error:' in line]
    assert len(errors) == 1, proc.stderr[-2000:]  # one message, not one per layer it passed through
    assert not (ws / 'marker').exists(), 'the checkpoint ran code while being loaded'


# ------------------------------------------------------------------------------------------------ what still works
def test_side_by_side_shows_a_run_without_seconds_per_iter(ws: Path, tools: dict[str, ModuleType], tmp_path: Path,
                                                           capsys) -> None:
    """8: a reused results.json with ``seconds_per_iter: null`` (a resume that trained nothing) is shown as n/a and
    written as null, with no speed ratio."""
    out = tmp_path / 'sbs.json'
    proc = run_in_process(tools['side_by_side'], ['--models', 'lite', 'lite-s', '--reuse', '--timing-rounds', '0',
                                                  '--runs-dir', str(ws / 'runs'), '--out', str(out)], capsys)
    assert proc.returncode == 0, proc.stderr[-2000:]
    row = next(line for line in proc.stdout.splitlines() if line.startswith('Lite-m'))
    assert 'n/a' in row.split()
    record = json.loads(out.read_text())
    assert [m['seconds_per_iter'] for m in record['models']] == [None, None]
    assert set(record['ratios']) == {'params_used', 'flops'}


def test_suggested_replacement_merges(ws: Path) -> None:
    """12: what the merge-into-None message suggests gives the backbone a Pretrained init."""
    from shufflenet_det.utils.build import load_config
    cfg = load_config(ws / 'tiny.py', {'model.backbone.init_cfg._delete_': True,
                                       'model.backbone.init_cfg.type': 'Pretrained',
                                       'model.backbone.init_cfg.checkpoint': str(ws / 'v2_1x.pth')})
    assert cfg.model.backbone.init_cfg.to_dict() == dict(type='Pretrained', checkpoint=str(ws / 'v2_1x.pth'))


def test_pretrained_weights_that_fit_pass_and_partial_load_is_explicit(ws: Path) -> None:
    """11: fitting Pretrained weights pass the check; another width passes only as a requested partial load."""
    from shufflenet_det.apps.launch import ModelCheckError, check_pretrained_files
    from shufflenet_det.utils.build import load_config
    check_pretrained_files(load_config(ws / 'pretrained_fits.py'))
    narrow = load_config(ws / 'pretrained_narrow.py')
    with pytest.raises(ModelCheckError, match='shape mismatches'):
        check_pretrained_files(narrow)
    check_pretrained_files(narrow, partial_load=True)


def test_budget_check_finds_the_cheapest_mixed_path() -> None:
    """9: the budget check refuses only a limit below the cheapest path, also when that path mixes choices (here
    every uniform path costs 1700, the cheapest mix 500)."""
    from nas_fixtures import SPACE
    from shufflenet_det.apps.nas_search import SearchError, check_budget
    from shufflenet_det.models.backbones.detnas_supernet import SearchSpace
    space = SearchSpace.build(SPACE)
    cost = 100 * (5 - 4 * np.eye(4, dtype=int)[[0, 1, 2, 3, 0]])  # unit x choice: one cheap choice per unit

    def counter(path: tuple[int, ...]) -> int:
        return int(sum(cost[unit, choice] for unit, choice in enumerate(path)))

    check_budget(space, counter, 500)
    with pytest.raises(SearchError, match=r'flops_limit=499 .* 500 \(0.00M, encoding 01230\)'):
        check_budget(space, counter, 499)
