"""tools/analysis_tools/benchmark.py: every backend row, ratios, unavailable peers/GPU rows, JSON and plot."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import mmdet  # noqa: F401  (installed by tools/setup.sh: a missing package fails, never skips)
import onnxruntime  # noqa: F401  (installed by tools/setup.sh: a missing package fails, never skips)
import pytest
import torch

import deploy_fixtures as fx
from helpers import load_script

pytestmark = pytest.mark.slow  # tool runs, exports, training: make test-fast leaves these out


def _tool():
    return load_script('tools/analysis_tools/benchmark.py', 'benchmark_tool')


def test_backbone_benchmark_writes_json_and_plot(tmp_path: Path, capsys) -> None:
    out, png = tmp_path / 'bench.json', tmp_path / 'bench.png'
    backends = ['torch-plain', 'torch-folded', 'torch-cl', 'torch-jit', 'ort-plain', 'ort-deploy', 'ncnn',
                'ort-cuda', 'cuda-fp32', 'cuda-fp16']
    rc = _tool().main(['--backbone', 'ShuffleNetV2', '--backbone-args', '{"out_indices": [3]}', '--sizes', '64',
                       '64x96', '--runs', '3', '--warmup', '1', '--threads', '1', '--backends', *backends,
                       '--no-progress', '--out', str(out), '--plot', str(png)])
    assert rc == 0
    text = capsys.readouterr().out
    assert 'x torch-plain' in text and 'UNAVAILABLE' in text
    data = json.loads(out.read_text())
    rows = data['rows']
    assert data['settings']['threads'] == 1 and data['environment']['torch'] == torch.__version__
    ours = [r for r in rows if r['model'].startswith('shufflenet_det')]
    assert len(ours) == len(backends) * 2
    cpu = [r for r in ours if r['backend'] in backends[:7]]
    assert all(r['status'] == 'ok' for r in cpu), [r for r in cpu if r['status'] != 'ok']
    for r in cpu:
        assert r['min_ms'] <= r['median_ms'] <= r['p90_ms'] and r['throughput'] > 0
        assert r['vs_torch_plain'] is not None and r['vs_ort_plain'] is not None
    assert {tuple(r['size']) for r in cpu} == {(64, 64), (64, 96)}
    plain = [r for r in cpu if r['backend'] == 'torch-plain']
    # exact: the row's median divided by itself (x / x is exactly 1 in IEEE arithmetic; JSON keeps every bit)
    assert all(r['vs_torch_plain'] == 1.0 for r in plain)
    # GPU rows: measured on a GPU machine, otherwise reported with the reason (never silently dropped)
    gpu = [r for r in ours if r['backend'] in ('cuda-fp32', 'cuda-fp16')]
    if not torch.cuda.is_available():
        assert all(r['status'] == 'unavailable' and 'CUDA' in r['note'] for r in gpu)
    # peers: the ShuffleNetV2 1.0x of torchvision / mmpretrain, or why they are missing
    peers = [r for r in rows if not r['model'].startswith('shufflenet_det')]
    assert {r['model'] for r in peers} == {'torchvision shufflenet_v2_x1_0', 'mmpretrain ShuffleNetV2 1.0x'}
    if importlib.util.find_spec('torchvision') is None:
        assert all(r['status'] == 'unavailable' and 'not installed' in r['note'] for r in peers
                   if r['model'].startswith('torchvision'))
    assert png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    summary = {(s['model'], tuple(s['size'])): s for s in data['summary']}
    assert len(summary) == 2
    for s in summary.values():
        assert s['best_deploy']['backend'] in ('ort-deploy', 'ncnn') and s['best_deploy']['ratio'] > 0
        assert s['best_eager']['backend'] in ('torch-folded', 'torch-cl', 'torch-jit')
    assert 'best deploy path' in text


def test_detector_benchmark_rows(tmp_path: Path) -> None:
    from shufflenet_det.benchmark import run_benchmark
    detector = fx.spread_retinanet()
    rows = run_benchmark([('mini', detector)], [(128, 128)], ['torch-plain', 'torch-cl', 'ort-deploy', 'ncnn'],
                         runs=2, warmup=1, threads=1, progress=False)
    assert [r.status for r in rows] == ['ok'] * 4, [(r.backend, r.note) for r in rows]
    assert rows[1].vs_torch_plain is not None
    assert 'torch-free' in rows[3].note and 'post-processing' in rows[3].note


def test_backend_table_and_ncnn_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every backend name has a builder; without ncnn / pnnx the ncnn row is unavailable, with the reason."""
    from shufflenet_det.benchmark import ALL_BACKENDS, BACKENDS, DEFAULT_BACKENDS, run_benchmark
    assert set(BACKENDS) == set(ALL_BACKENDS) and set(DEFAULT_BACKENDS) <= set(ALL_BACKENDS)
    assert all(callable(build) for build in BACKENDS.values())
    model = fx.backbone(widen_factor=0.5, out_indices=(3,))
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, 'find_spec',
                        lambda name, *args: None if name in ('ncnn', 'pnnx') else find_spec(name, *args))
    rows = run_benchmark([('bb', model)], [(64, 64)], ['torch-plain', 'ncnn'], runs=2, warmup=0, threads=1,
                         progress=False)
    assert [r.status for r in rows] == ['ok', 'unavailable'], [(r.backend, r.note) for r in rows]
    assert 'not installed' in rows[1].note and rows[1].median_ms is None
    monkeypatch.undo()
    with pytest.raises(ValueError, match='unknown backends'):
        run_benchmark([('bb', model)], [(64, 64)], ['tpu'], progress=False)


def test_map_plot_from_results_files(tmp_path: Path) -> None:
    from shufflenet_det.benchmark import Row, plot
    results = tmp_path / 'results.json'
    results.write_text(json.dumps(dict(config='configs/mini/a-b.py', metrics=dict(bbox_mAP=0.61))))
    args = _tool().parse_args(['--backbone', 'ShuffleNetV2', '--results', str(results), '--map', 'x=0.3'])
    assert args.maps == {'x': 0.3, 'a-b': 0.61}
    rows = [Row('a-b', 'ort-deploy', (256, 256), 1, 2, median_ms=5.0), Row('x', 'ort-deploy', (256, 256), 1, 2,
                                                                          median_ms=3.0)]
    png = plot(rows, tmp_path / 'map.png', args.maps)
    assert png.read_bytes()[:4] == b'\x89PNG'
    bad = tmp_path / 'bad.json'
    bad.write_text('{}')
    with pytest.raises(SystemExit):
        _tool().parse_args(['--backbone', 'ShuffleNetV2', '--results', str(bad)])


def test_bad_arguments(tmp_path: Path) -> None:
    tool = _tool()
    with pytest.raises(SystemExit):
        tool.main(['--backbone', 'ShuffleNetV2', '--sizes', '7'])
    with pytest.raises(SystemExit):
        tool.main(['--backbone', 'ShuffleNetV2', '--runs', '0'])
    with pytest.raises(SystemExit):
        tool.main(['--backbone', 'ShuffleNetV2', '--config', str(fx.MINI_CFG)])
    with pytest.raises(SystemExit):
        tool.main(['--backbone', 'ShuffleNetV2', '--backends', 'tpu'])


def test_time_in_rounds_blocks_rewarm_and_failures() -> None:
    """Each callable runs in consecutive blocks, re-warmed at each switch; a failing one is reported, not fatal."""
    from shufflenet_det.benchmark import time_in_rounds
    calls: list[str] = []

    def boom() -> None:
        calls.append('c')
        raise RuntimeError('boom')

    stats = time_in_rounds([lambda: calls.append('a'), lambda: calls.append('b'), boom], runs=10, warmup=6,
                           rounds=2)
    assert isinstance(stats[2], RuntimeError) and calls.count('c') == 1
    for s in stats[:2]:
        assert set(s) == {'median_ms', 'p90_ms', 'min_ms', 'mean_ms'} and 0 <= s['min_ms'] <= s['median_ms']
    # warm-up 6, then per round max(3, 6 // 2) = 3 untimed + 5 timed calls, in blocks: never a-b-a-b
    assert calls.count('a') == calls.count('b') == 6 + 2 * (3 + 5)
    blocks = [c for i, c in enumerate(calls) if i == 0 or calls[i - 1] != c]
    assert blocks == ['a', 'b', 'c', 'a', 'b', 'a', 'b']
    with pytest.raises(ValueError, match='rounds'):
        time_in_rounds([lambda: None], runs=1, warmup=0, rounds=0)


def test_rounds_argument_is_checked() -> None:
    with pytest.raises(SystemExit):
        _tool().main(['--backbone', 'ShuffleNetV2', '--rounds', '0'])
