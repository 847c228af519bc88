"""The DetNAS supernet and its path sampler: search spaces, uniform path sampling, a path's weights as a standalone
DetNAS backbone (same outputs), multiply-adds of a path, the backbone contract, and the training hook (sequence,
resume, distributed synchronisation)."""
from __future__ import annotations

import os
import socket
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from torch.nn.modules.batchnorm import _BatchNorm

from helpers import assert_close_scaled, build_backbone, randomize_bn
from shufflenet_det.analysis import classifier_complexity, model_complexity
from shufflenet_det.engine.nas_hooks import UniformPathSamplerHook
from shufflenet_det.models.backbones.archs import DETNAS_ARCHS
from shufflenet_det.models.backbones.detnas_supernet import SEARCH_SPACES, DetNASSupernet, SearchSpace
from shufflenet_det.models.backbones.spos_blocks import BLOCK_CHOICES
from shufflenet_det.models.layers import count_batchnorm
from shufflenet_det.nas.flops import PathFlops

TINY = dict(stem_channels=8, stage_channels=[16, 24, 32, 48], last_channels=64, repeats=[1, 2, 2, 1])
ALL_OUT = (0, 1, 2, 3, 4)


def tiny_supernet(**kw) -> DetNASSupernet:
    model = build_backbone(dict(dict(type='DetNASSupernet', space=TINY, out_indices=ALL_OUT), **kw))
    torch.manual_seed(0)
    model.init_weights()
    return randomize_bn(model, seed=1, with_weights=True)


# ---------------------------------------------------------------- search spaces
@pytest.mark.parametrize('name', list(SEARCH_SPACES))
def test_named_spaces_are_the_published_layouts(name: str):
    space = SearchSpace.build(name)
    published = DETNAS_ARCHS[SEARCH_SPACES[name]]
    assert space.layout() == {k: list(v) if isinstance(v, tuple) else v for k, v in published.items()
                              if k != 'choices'}
    assert space.num_blocks == len(published['choices'])
    assert space.check_path(published['choices']) == tuple(published['choices'])
    assert space.size == 4 ** space.num_blocks


def test_default_space_is_300m_and_1_3g_by_option():
    assert build_backbone(dict(type='DetNASSupernet')).space == SearchSpace.build('300M')
    supernet = build_backbone(dict(type='DetNASSupernet', space='1.3G', out_indices=(0, 1, 2, 3)))
    assert supernet.space.num_blocks == 40 and supernet.out_channels == (96, 240, 480, 960)


@pytest.mark.parametrize('space, message', [
    ('600M', "allowed names: ['300M', '1.3G']"),
    (dict(TINY, choices=[0] * 6), "unknown keys ['choices']"),
    ({k: v for k, v in TINY.items() if k != 'repeats'}, "missing keys ['repeats']"),
    (dict(TINY, stage_channels=[16, 24, 32]), 'expected 4'),
    (dict(TINY, stage_channels=[16, 24, 33, 48]), 'is odd'),
    (3, 'must be one of'),
])
def test_bad_spaces(space, message: str):
    with pytest.raises(ValueError, match=message.replace('[', r'\[').replace(']', r'\]')):
        SearchSpace.build(space)


@pytest.mark.parametrize('path, message', [
    ([0] * 5, 'has 5 entries but the search space has 6 units'),
    ([0, 1, 2, 3, 4, 0], r'path\[4\]=4 is not a block choice'),
    ([0, 1, 2, 3, True, 0], r'path\[4\]=True'),
    ('012301', 'must be a list'),
])
def test_bad_paths(path, message: str):
    supernet = build_backbone(dict(type='DetNASSupernet', space=TINY))
    with pytest.raises(ValueError, match=message):
        supernet.set_path(path)
    with pytest.raises(ValueError, match=message):
        build_backbone(dict(type='DetNASSupernet', space=TINY, path=path))


def test_paths_accept_names_and_ids():
    path = ['xception_3x3', 2, 1, 0, 3, 'shufflenet_5x5']
    supernet = build_backbone(dict(type='DetNASSupernet', space=TINY, path=path))
    assert supernet.path == (3, 2, 1, 0, 3, 1)
    assert [u.active_choice for u in supernet.units()] == [BLOCK_CHOICES[i] for i in (3, 2, 1, 0, 3, 1)]


# ---------------------------------------------------------------- sampling
def test_uniform_sampling_covers_every_choice_of_every_unit():
    space = SearchSpace.build('300M')
    rng = np.random.default_rng(0)
    paths = np.array([space.sample(rng) for _ in range(4000)])
    assert paths.shape == (4000, 20)
    for unit in range(space.num_blocks):
        counts = np.bincount(paths[:, unit], minlength=4)
        assert len(counts) == 4 and counts.min() > 0
        # uniform: each choice 1000 +- 4.5 sigma (sigma = sqrt(4000 * 1/4 * 3/4) = 27.4)
        np.testing.assert_allclose(counts, 1000, atol=125)  # integer draws of a seeded PCG64: the same anywhere
    # units are independent: the joint frequencies of two units are uniform over the 16 pairs
    pairs = np.bincount(paths[:, 0] * 4 + paths[:, 19], minlength=16)
    np.testing.assert_allclose(pairs, 250, atol=70)
    # every unit changes between consecutive draws about 3/4 of the time
    assert 0.7 < float(np.mean(paths[1:] != paths[:-1])) < 0.8


def test_sample_path_activates_it_and_is_seeded():
    supernet = build_backbone(dict(type='DetNASSupernet', space=TINY))
    a = supernet.sample_path(np.random.default_rng(5))
    assert supernet.path == a
    assert supernet.sample_path(np.random.default_rng(5)) == a
    assert len({supernet.sample_path(np.random.default_rng(s)) for s in range(20)}) > 10


# ---------------------------------------------------------------- a path = the standalone DetNAS
PATHS = [(0,) * 6, (1,) * 6, (2,) * 6, (3,) * 6, (3, 0, 2, 1, 3, 2), (2, 1, 0, 3, 1, 0)]


@pytest.mark.parametrize('path', PATHS, ids=[''.join(map(str, p)) for p in PATHS])
def test_path_weights_give_the_standalone_detnas_outputs(path: tuple):
    supernet = tiny_supernet()
    supernet.set_path(path)
    detnas = build_backbone(dict(type='DetNAS', arch=supernet.subnet_arch(), out_indices=ALL_OUT))
    state = supernet.subnet_state_dict()
    assert set(state) == set(detnas.state_dict())  # a pure key remap: nothing missing, nothing extra
    detnas.load_state_dict(state, strict=True)
    detnas.eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ours, theirs = supernet(x), detnas(x)
    assert len(ours) == len(theirs) == 5
    for a, b in zip(ours, theirs):
        assert a.shape == b.shape
        # the same layers and weights (a pure key remap): normally bit-identical; 1e-6 of max(1, S) (~10 float32
        # eps of the magnitude) covers another kernel choice, a wrong choice block changes outputs by O(S)
        assert_close_scaled(a, b, atol=1e-6)


def test_other_paths_differ_and_each_choice_owns_its_weights():
    supernet = tiny_supernet()
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        outs = []
        for path in PATHS[:4]:
            supernet.set_path(path)
            outs.append(supernet(x)[-1])
    for i in range(4):
        for j in range(i + 1, 4):
            assert (outs[i] - outs[j]).abs().max() > 1e-2 * outs[i].abs().max()  # another function: O(S)
    # the 4 choices of unit 0 are 4 distinct blocks of the choice's kind
    unit = supernet.units()[0]
    assert list(unit.candidates) == list(BLOCK_CHOICES)
    assert [b.choice for b in unit.candidates.values()] == list(BLOCK_CHOICES)


def test_detector_state_dict_collapses_with_a_prefix():
    supernet = tiny_supernet()
    path = (1, 3, 0, 2, 2, 1)
    state = {f'backbone.{k}': v for k, v in supernet.state_dict().items()}
    state['neck.conv.weight'] = torch.zeros(1)
    out = supernet.subnet_state_dict(state, path=path, prefix='backbone.')
    detnas = build_backbone(dict(type='DetNAS', arch=supernet.space.arch(path), out_indices=ALL_OUT))
    assert set(out) == {f'backbone.{k}' for k in detnas.state_dict()} | {'neck.conv.weight'}
    assert torch.equal(out['backbone.stage2.0.branch_main.0.weight'],  # unit 1 = stage2.0: choice 3
                       state['backbone.stage2.0.candidates.xception_3x3.branch_main.0.weight'])
    assert torch.equal(out['backbone.stage2.1.branch_main.0.weight'],  # unit 2 = stage2.1: choice 0
                       state['backbone.stage2.1.candidates.shufflenet_3x3.branch_main.0.weight'])
    partial = {k: v for k, v in state.items() if 'stage4' not in k}
    with pytest.raises(ValueError, match=r"units \['stage4.0'\]"):
        supernet.subnet_state_dict(partial, path=path, prefix='backbone.')


# ---------------------------------------------------------------- multiply-adds of a path
@pytest.mark.slow
def test_path_flops_are_the_standalone_counts():
    supernet_cfg = dict(type='DetNASSupernet', space=TINY, out_indices=(1, 2, 3))
    classifier = PathFlops(dict(backbone=supernet_cfg), 'classifier', 64)
    backbone = PathFlops(dict(backbone=supernet_cfg), 'backbone', 64)
    seen = set()
    for path in PATHS:
        arch = SearchSpace.build(TINY).arch(path)
        expected = classifier_complexity(dict(type='DetNAS', arch=arch), 64)['flops']
        assert classifier(path) == expected
        detnas = build_backbone(dict(type='DetNAS', arch=arch, out_indices=(1, 2, 3)))
        assert backbone(path) == model_complexity(detnas, 64)['flops']
        seen.add(expected)
    assert len(seen) == len(PATHS)  # the choices cost differently


def test_published_300m_path_counts_321m():
    counter = PathFlops(dict(backbone=dict(type='DetNASSupernet', space='300M')), 'classifier', 224)
    assert counter(DETNAS_ARCHS['COCO-FPN-300M']['choices']) / 1e6 == pytest.approx(321.2, abs=0.05)


# ---------------------------------------------------------------- the backbone contract
def test_out_channels_frozen_stages_and_deploy():
    supernet = tiny_supernet(frozen_stages=1)
    assert supernet.out_channels == (16, 24, 32, 48, 64) and supernet.out_strides == (4, 8, 16, 32, 32)
    frozen = [supernet.conv1, supernet.stage1, supernet.stage2]
    assert all(not p.requires_grad for m in frozen for p in m.parameters())
    assert all(p.requires_grad for p in supernet.stage3.parameters())
    supernet.train()
    assert all(not m.training for m in supernet.stage2.modules() if isinstance(m, _BatchNorm))
    supernet.eval()
    supernet.set_path(PATHS[4])
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        before = supernet(x)
        supernet.switch_to_deploy()
        after = supernet(x)
    assert count_batchnorm(supernet) == 0
    # folded vs unfolded BN: another float32 rounding of every weight and another summation order, a few eps
    # (1.2e-7) per layer of the magnitude S; allowed 2e-5 of max(1, S) + 1e-4 of each element
    for a, b in zip(before, after):
        assert_close_scaled(b, a, atol=2e-5, rtol=1e-4)


def test_only_the_active_path_gets_gradients():
    supernet = tiny_supernet()
    supernet.train()
    supernet.set_path(PATHS[5])
    sum(o.sum() for o in supernet(torch.randn(2, 3, 64, 64))).backward()
    for unit, choice in zip(supernet.units(), PATHS[5]):
        for name, block in unit.candidates.items():
            has_grad = [p.grad is not None for p in block.parameters()]
            assert all(has_grad) if name == BLOCK_CHOICES[choice] else not any(has_grad), name


# ---------------------------------------------------------------- the training hook
def fake_runner(model: torch.nn.Module, iteration: int = 0, seed: int = 7) -> SimpleNamespace:
    return SimpleNamespace(model=model, iter=iteration, seed=seed)


def test_hook_samples_a_seeded_path_per_iteration():
    supernet = build_backbone(dict(type='DetNASSupernet', space=TINY))
    model = torch.nn.Sequential(supernet)
    hook = UniformPathSamplerHook()
    runner = fake_runner(model)
    hook.before_train(runner)
    paths = []
    for i in range(200):
        runner.iter = i
        hook.before_train_iter(runner, batch_idx=i % 10)
        assert supernet.path == hook.last_paths[0]
        assert supernet.path == SearchSpace.build(TINY).sample(np.random.default_rng([7, i]))
        paths.append(supernet.path)
    arr = np.array(paths)
    assert all(set(arr[:, u]) == {0, 1, 2, 3} for u in range(arr.shape[1]))  # every choice trained at every unit
    # a resumed run (a new hook, the iteration counter restored) continues the same sequence
    resumed = UniformPathSamplerHook()
    runner.iter = 123
    resumed.before_train_iter(runner, 0)
    assert supernet.path == paths[123]
    # an explicit seed overrides the Runner's
    UniformPathSamplerHook(seed=3).before_train_iter(runner, 0)
    assert supernet.path == SearchSpace.build(TINY).sample(np.random.default_rng([3, 123]))


def test_hook_refuses_a_model_without_supernet():
    with pytest.raises(RuntimeError, match="no supernet backbone"):
        UniformPathSamplerHook().before_train(fake_runner(torch.nn.Linear(2, 2)))
    with pytest.raises(ValueError, match='seed'):
        UniformPathSamplerHook(seed=-1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _dist_worker(rank: int, world: int, port: int, queue) -> None:
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    torch.distributed.init_process_group('gloo', rank=rank, world_size=world)
    try:
        supernet = build_backbone(dict(type='DetNASSupernet', space=TINY))
        hook = UniformPathSamplerHook(seed=100 + rank)  # different seeds: only the broadcast makes them agree
        runner = fake_runner(supernet, iteration=5)
        hook.before_train_iter(runner, 0)
        queue.put((rank, supernet.path))
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.skipif(not torch.distributed.is_gloo_available(), reason='this torch build has no gloo backend')
@pytest.mark.slow
def test_hook_broadcasts_rank0_path_in_distributed_training():
    ctx = mp.get_context('spawn')
    queue = ctx.SimpleQueue()
    mp.start_processes(_dist_worker, args=(2, _free_port(), queue), nprocs=2, join=True, start_method='spawn')
    results = dict(queue.get() for _ in range(2))
    expected = SearchSpace.build(TINY).sample(np.random.default_rng([100, 5]))  # rank 0's draw
    assert results == {0: expected, 1: expected}
    assert SearchSpace.build(TINY).sample(np.random.default_rng([101, 5])) != expected
