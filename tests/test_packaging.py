"""The built wheel installs into an existing mmdet environment without moving any of its packages."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from helpers import REPO

pytestmark = [pytest.mark.compat, pytest.mark.slow]

@pytest.fixture(scope='module')
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp('wheel')
    # setuptools builds in the source tree (build/, *.egg-info): build from a copy of what the wheel is made of, so
    # that the two suites of `make test`, which run at once, never share a build folder
    src = tmp_path_factory.mktemp('src')
    ignore = shutil.ignore_patterns('__pycache__', '*.pyc')
    for name in ('pyproject.toml', 'README.md'):
        shutil.copy2(REPO / name, src / name)
    for name in ('shufflenet_det', 'configs'):  # configs: the target of shufflenet_det/.mim/configs
        shutil.copytree(REPO / name, src / name, symlinks=True, ignore=ignore)
    proc = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q',
                           '-w', str(out), str(src)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    wheels = list(out.glob('shufflenet_det-*.whl'))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_metadata_declares_ranges_not_pins(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith('.dist-info/METADATA'))
        requires = [line.split(':', 1)[1].strip() for line in zf.read(meta).decode().splitlines()
                    if line.startswith('Requires-Dist:') and 'extra ==' not in line]
    by_name = {r.split('>')[0].split('<')[0].split('=')[0].split('!')[0].strip().lower(): r for r in requires}
    assert set(by_name) >= {'torch', 'mmcv', 'mmengine', 'mmdet'}
    assert '==' not in ''.join(requires), requires  # no exact pins: they belong to requirements/constraints*.txt
    assert '<' not in by_name['torch'], by_name['torch']  # no torch upper bound the code does not need
    assert 'setuptools' not in by_name


def test_installing_the_wheel_changes_nothing_else(wheel: Path, tmp_path: Path) -> None:
    """pip resolves the wheel against this environment, offline: the only thing it would install is the plugin."""
    report = tmp_path / 'report.json'
    proc = subprocess.run([sys.executable, '-m', 'pip', 'install', '--dry-run', '--no-index',
                           '--report', str(report), str(wheel)], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        # resolving offline failed: some requirement is not satisfied by this environment
        pytest.fail(f'the wheel does not resolve against this environment:\n{proc.stdout}\n{proc.stderr}')
    data = json.loads(report.read_text())
    names = {item['metadata']['name'].lower().replace('_', '-'): item['metadata']['version']
             for item in data['install']}
    assert set(names) == {'shufflenet-det'}, f'installing the wheel would also install or change {names}'
