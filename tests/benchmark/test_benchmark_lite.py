"""Lite detectors in the benchmark: torch / ONNX Runtime (with and without NMS) / ncnn rows, the ratio to a bare
backbone timed in the same run, and the mAP-vs-latency plot fed by the main job's results."""
from __future__ import annotations

import json
from pathlib import Path

import mmdet  # noqa: F401  (installed by tools/setup.sh: a missing package fails, never skips)
import onnxruntime  # noqa: F401  (installed by tools/setup.sh: a missing package fails, never skips)
import pytest

import deploy_fixtures as fx
from helpers import load_script

pytestmark = pytest.mark.slow  # tool runs, exports, training: make test-fast leaves these out


def test_lite_rows_and_ratio_to_the_bare_backbone() -> None:
    from shufflenet_det.benchmark import backbone_ratios, run_benchmark
    lite = fx.spread_lite()
    backbone = fx.backbone(widen_factor=0.5, out_indices=(1, 2, 3))
    backends = ['torch-plain', 'ort-deploy', 'ort-raw', 'ncnn']
    rows = run_benchmark([('bb', backbone), ('lite', lite)], [(128, 160)], backends, runs=2, warmup=1, threads=1,
                         progress=False)
    by = {(r.model, r.backend): r for r in rows}
    assert by[('bb', 'ort-raw')].status == 'unavailable' and 'ort-deploy' in by[('bb', 'ort-raw')].note
    for backend in backends:
        row = by[('lite', backend)]
        assert row.status == 'ok' and row.median_ms > 0, (backend, row.note)
    assert 'without NMS' in by[('lite', 'ort-raw')].note
    assert 'numpy post-processing' in by[('lite', 'ncnn')].note
    ratios = {v['backend']: v for v in backbone_ratios(rows, 'bb')}
    assert set(ratios) == {'ort-raw', 'ncnn'}
    assert ratios['ort-raw']['reference_backend'] == 'ort-deploy' and ratios['ncnn']['reference_backend'] == 'ncnn'
    for v in ratios.values():
        # exact: the library divides the same two floats (one correctly rounded IEEE division on any CPU)
        assert v['model'] == 'lite' and v['ratio'] == v['median_ms'] / v['reference_ms']


def test_tool_times_a_lite_config_next_to_its_backbone(tmp_path: Path, capsys, monkeypatch) -> None:
    tool = load_script('tools/analysis_tools/benchmark.py', 'benchmark_tool')
    name = fx.LITE_CFG.stem
    main_job = tmp_path / 'main_job'
    (main_job / name).mkdir(parents=True)
    (main_job / name / 'results.json').write_text(json.dumps(dict(config=str(fx.LITE_CFG),
                                                                  metrics=dict(bbox_mAP=0.42))))
    monkeypatch.setattr(tool, 'MAIN_JOB_DIR', main_job)
    out, png = tmp_path / 'bench.json', tmp_path / 'map.png'
    rc = tool.main(['--config', str(fx.LITE_CFG), '--add-backbone', 'ShuffleNetV2', '--backbone-args',
                    '{"out_indices": [1, 2, 3]}', '--sizes', '128x160', '--backends', 'ort-raw', 'ort-deploy',
                    '--runs', '2', '--warmup', '1', '--rounds', '1', '--threads', '1', '--no-progress', '--out',
                    str(out), '--plot', str(png)])
    assert rc == 0
    text = capsys.readouterr().out
    assert f'mAP of {name}: 0.420' in text and f'{name} 128x160: ort-raw' in text
    data = json.loads(out.read_text())
    assert [v['backend'] for v in data['versus_backbone']] == ['ort-raw']
    assert data['versus_backbone'][0]['reference'].startswith('shufflenet_det ShuffleNetV2')
    assert {r['model'] for r in data['rows'] if r['status'] == 'ok'} == {name, data['versus_backbone'][0]['reference']}
    assert png.read_bytes()[:4] == b'\x89PNG'
    with pytest.raises(SystemExit):
        tool.parse_args(['--backbone', 'ShuffleNetV2', '--add-backbone', 'ShuffleNetV2'])
