"""The SPOS evolution (top-k, mutation, crossover, budget filter, resumable state), the search settings of a config,
and the held-out COCO split, on synthetic scores and tiny inputs (no detector is trained here)."""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from shufflenet_det.apps.nas_search import SearchError, parse_settings, reference_paths
from shufflenet_det.models.backbones.detnas_supernet import SearchSpace
from shufflenet_det.nas.data import default_split_paths, split_coco_images, write_coco_split
from shufflenet_det.nas.evolution import EvolutionarySearch, EvolutionSettings, SearchState, key_path, path_key
from shufflenet_det.nas.flops import PathFlops
from shufflenet_det.utils.build import load_config
from tiny_mini_coco import REPO

SPACE = SearchSpace.build(dict(stem_channels=8, stage_channels=[16, 24, 32, 48], last_channels=64,
                               repeats=[2, 2, 3, 2]))  # 9 units, 4^9 = 262144 paths
COST = np.array([1.0, 1.3, 1.8, 2.2])  # synthetic multiply-adds per choice (millions)
VALUE = np.array([0.0, 0.5, 0.8, 1.0])  # synthetic score per choice: more expensive is better, up to the budget


def flops_fn(path) -> int:
    return int(COST[list(path)].sum() * 1e6)


def score_fn(path) -> dict:
    s = float(VALUE[list(path)].sum() / len(path))
    return dict(score=s, metrics={'synthetic': s})


def settings(**kw) -> EvolutionSettings:
    return EvolutionSettings(**{**dict(population_size=12, top_k=4, num_mutation=5, num_crossover=5,
                                       mutation_prob=0.2, generations=6, seed=0, flops_limit=15e6), **kw})


def records(state: SearchState) -> list[tuple]:
    return [(k, r['flops'], r['score'], r['generation'], r['origin']) for k, r in state.candidates.items()]


def test_keys_round_trip():
    path = (2, 1, 2, 0, 3)
    assert path_key(path) == '21203' and key_path('21203') == path


def test_mutation_and_crossover_keep_valid_encodings():
    search = EvolutionarySearch(SPACE, settings(mutation_prob=0.3), flops_fn, score_fn)
    rng = np.random.default_rng(0)
    parents = [SPACE.sample(rng) for _ in range(50)]
    changed = 0
    for a, b in zip(parents, parents[1:]):
        child = search.mutate(rng, a)
        assert SPACE.check_path(child) == child and len(child) == SPACE.num_blocks
        changed += sum(x != y for x, y in zip(child, a))
        cross = search.crossover(rng, a, b)
        assert SPACE.check_path(cross) == cross
        assert all(c in (x, y) for c, x, y in zip(cross, a, b))  # every gene from one of the parents
    # a gene is redrawn with p = 0.3 and then differs with p = 3/4: about 0.225 of the genes change
    assert 0.15 < changed / (49 * SPACE.num_blocks) < 0.30


def test_every_candidate_respects_the_budget_and_is_new():
    s = settings(flops_limit=14e6, flops_min=11e6)
    state = EvolutionarySearch(SPACE, s, flops_fn, score_fn).run()
    assert state.generation == s.generations
    keys = list(state.candidates)
    assert len(keys) == len(set(keys))  # never scored twice
    for key, rec in state.candidates.items():
        assert SPACE.check_path(rec['path']) == key_path(key)
        assert rec['flops'] == flops_fn(rec['path'])
        assert 11e6 <= rec['flops'] <= 14e6
    rejected = [k for k, f in state.flops.items() if not 11e6 <= f <= 14e6]
    assert rejected and not set(rejected) & set(keys)  # paths outside the budget were counted, never scored
    origins = {r['origin'] for r in state.candidates.values()}
    assert origins == {'random', 'mutation', 'crossover'}
    assert all(r['origin'] == 'random' for r in state.candidates.values() if r['generation'] == 0)


def test_top_k_is_the_best_seen_and_the_search_improves():
    s = settings()
    state = EvolutionarySearch(SPACE, s, flops_fn, score_fn).run()
    ranked = sorted(state.candidates, key=lambda k: (-state.candidates[k]['score'], state.candidates[k]['flops'], k))
    assert state.top_k == ranked[:s.top_k]
    best = [h['best_score'] for h in state.history]
    assert best == sorted(best)  # the top-k keeps the best ever seen
    first = np.mean([r['score'] for r in state.candidates.values() if r['generation'] == 0])
    last = np.mean([r['score'] for r in state.candidates.values() if r['generation'] == s.generations - 1])
    assert last > first + 0.05  # children of the top-k beat random paths on this monotone score
    # the search finds the optimum under the budget (enumerated: 4^9 paths), well above a random path's mean
    every = np.array(list(itertools.product(range(4), repeat=SPACE.num_blocks)))
    affordable = COST[every].sum(1) * 1e6 <= s.flops_limit
    optimum = VALUE[every].sum(1)[affordable].max() / SPACE.num_blocks
    assert best[-1] == pytest.approx(optimum) and optimum > first + 0.15


def test_same_seed_same_search_other_seed_differs():
    a = EvolutionarySearch(SPACE, settings(), flops_fn, score_fn).run()
    b = EvolutionarySearch(SPACE, settings(), flops_fn, score_fn).run()
    c = EvolutionarySearch(SPACE, settings(seed=1), flops_fn, score_fn).run()
    assert records(a) == records(b) and a.history == b.history
    assert records(a) != records(c)


def test_state_round_trip_through_json_continues_identically():
    s = settings(generations=5)
    full = EvolutionarySearch(SPACE, s, flops_fn, score_fn).run()
    search = EvolutionarySearch(SPACE, settings(generations=2), flops_fn, score_fn)
    part = search.run()
    saved = json.loads(json.dumps(part.to_dict()))
    counted_before = set(saved['flops'])
    calls = []
    continued = EvolutionarySearch(SPACE, s, lambda p: calls.append(p) or flops_fn(p), score_fn).run(
        SearchState.from_dict(saved))
    assert records(continued) == records(full) and continued.history == full.history
    assert continued.top_k == full.top_k and continued.population == full.population
    assert calls and not set(map(path_key, calls)) & counted_before  # counted paths are not counted again
    with pytest.raises(ValueError, match='not a search state'):
        SearchState.from_dict({'generation': 1})


def test_small_space_exhausts_without_looping():
    tiny = SearchSpace.build(dict(stem_channels=8, stage_channels=[16, 24, 32, 48], last_channels=64,
                                  repeats=[1, 1, 1, 1]))  # 256 paths
    s = EvolutionSettings(population_size=100, top_k=5, num_mutation=20, num_crossover=20, generations=4, seed=0,
                          flops_limit=6e6)
    state = EvolutionarySearch(tiny, s, flops_fn, score_fn).run()
    affordable = sum(flops_fn(p) <= 6e6 for p in itertools.product(range(4), repeat=4))
    assert state.generation == 4
    assert len(state.candidates) == affordable  # every affordable path scored once, then nothing new to breed
    assert state.history[-1]['population'] == 0


@pytest.mark.parametrize('kw, message', [
    (dict(population_size=0), 'population_size=0'),
    (dict(num_mutation=8, num_crossover=8), 'at most population_size=12'),
    (dict(top_k=1), 'top_k >= 2'),
    (dict(mutation_prob=0.0), 'mutation_prob=0.0'),
    (dict(flops_limit=-1.0), 'flops_limit=-1.0'),
    (dict(flops_min=20e6), 'flops_min=20000000.0 must be at most'),
    (dict(generations=0), 'generations=0'),
])
def test_bad_settings(kw, message):
    with pytest.raises(ValueError, match=message):
        settings(**kw)


def test_flops_filter_with_the_project_counter():
    """The budget filter with real counts: every scored path of the tiny supernet is under the limit."""
    tiny = dict(stem_channels=8, stage_channels=[16, 24, 32, 48], last_channels=64, repeats=[1, 1, 1, 1])
    counter = PathFlops(dict(backbone=dict(type='DetNASSupernet', space=tiny, out_indices=(1, 2, 3))), 'backbone', 32)
    space = SearchSpace.build(tiny)
    pure = [counter((c,) * 4) for c in range(4)]  # at these widths shuffle 7x7 is the dearest, xception the cheapest
    limit = (min(pure) + max(pure)) / 2
    s = EvolutionSettings(population_size=4, top_k=2, num_mutation=1, num_crossover=1, generations=2, seed=0,
                          max_tries=3, flops_limit=limit)
    state = EvolutionarySearch(space, s, counter, lambda p: dict(score=float(sum(p)))).run()
    assert state.candidates and all(r['flops'] <= limit for r in state.candidates.values())
    assert any(f > limit for f in state.flops.values())


# ---------------------------------------------------------------- settings of a config
MINI = REPO / 'configs' / 'nas' / 'retinanet_detnas-supernet-300m_fpn_mini-coco.py'


def test_mini_config_settings():
    cfg = load_config(MINI)
    s = parse_settings(cfg, str(MINI))
    assert s.evolution.flops_limit == 330e6 and s.flops_mode == 'classifier'
    assert Path(s.subnet_config).resolve() == (REPO / 'configs/nas/retinanet_detnas-coco-fpn-300m_fpn_mini-coco.py')
    assert s.calib_dataloader['dataset']['pipeline'][1]['scale'] == (256, 256)  # tuples survive
    assert 'nas-val' in s.val_evaluator['ann_file'] and 'val2017.json' not in s.val_evaluator['ann_file']
    assert reference_paths(SearchSpace.build('300M'), ['COCO-FPN-300M'])[0][1][:3] == (2, 1, 2)


@pytest.mark.parametrize('options, message', [
    ({'nas_search.population_size': 0}, 'nas_search.population_size=0'),
    ({'nas_search.flops_mode': 'params'}, "flops_mode='params'"),
    ({'nas_search.num_calib_batches': 0}, 'num_calib_batches=0'),
    ({'nas_search.popsize': 3}, "unknown keys ['popsize']"),
    ({'nas_search.subnet_config': 'nowhere.py'}, "subnet_config 'nowhere.py' does not exist"),
    ({'nas_search.calib_dataloader': None}, "lacks ['calib_dataloader']"),
])
def test_bad_config_settings(options, message):
    cfg = load_config(MINI, options)
    with pytest.raises(SearchError, match=message.replace('[', r'\[').replace(']', r'\]')):
        parse_settings(cfg, str(MINI))


def test_references_must_fit_the_space():
    with pytest.raises(SearchError, match="'COCO-FPN-1.3G' has the layout"):
        reference_paths(SearchSpace.build('300M'), ['COCO-FPN-1.3G'])
    with pytest.raises(SearchError, match='not a published DetNAS encoding'):
        reference_paths(SearchSpace.build('300M'), ['COCO-FPN-9G'])


# ---------------------------------------------------------------- the held-out split
def coco(n: int) -> dict:
    return dict(info=dict(description='x'), licenses=[], categories=[dict(id=1, name='a')],
                images=[dict(id=i + 10, file_name=f'{i}.png', width=8, height=8) for i in range(n)],
                annotations=[dict(id=j, image_id=10 + j % n, category_id=1, bbox=[0, 0, 1, 1], area=1, iscrowd=0)
                             for j in range(3 * n)])


def test_split_is_disjoint_complete_and_seeded():
    data = coco(20)
    train, held = split_coco_images(data, 6, seed=3)
    tr, ho = {im['id'] for im in train['images']}, {im['id'] for im in held['images']}
    assert len(ho) == 6 and len(tr) == 14 and not tr & ho and tr | ho == {im['id'] for im in data['images']}
    assert all(a['image_id'] in tr for a in train['annotations'])
    assert all(a['image_id'] in ho for a in held['annotations'])
    assert len(train['annotations']) + len(held['annotations']) == len(data['annotations'])
    assert train['categories'] == held['categories'] == data['categories']
    assert held['info']['nas_split'] == dict(part='holdout', num_holdout=6, seed=3, source_images=20)
    assert split_coco_images(data, 6, seed=3) == (train, held)
    assert {im['id'] for im in split_coco_images(data, 6, seed=4)[1]['images']} != ho
    for n in (0, 20, 2.5):
        with pytest.raises(ValueError, match='num_holdout'):
            split_coco_images(data, n)


def test_split_files_are_written_together_and_never_replaced_unasked(tmp_path: Path):
    ann = tmp_path / 'instances_train2017.json'
    ann.write_text(json.dumps(coco(10)))
    train, held, written = write_coco_split(ann, 3)
    assert (train, held) == default_split_paths(ann) and written
    assert train.name == 'instances_train2017_nas-train.json' and held.name == 'instances_train2017_nas-val.json'
    assert len(json.loads(held.read_text())['images']) == 3
    assert write_coco_split(ann, 3)[2] is False  # the same split again: nothing to do
    before = held.read_bytes()
    with pytest.raises(FileExistsError, match='--overwrite'):
        write_coco_split(ann, 4)
    assert held.read_bytes() == before and not list(tmp_path.glob('.*.tmp'))
    assert write_coco_split(ann, 4, overwrite=True)[2]
    with pytest.raises(ValueError, match='is the input annotation file'):
        write_coco_split(ann, 3, out_train=ann)
