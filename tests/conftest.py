"""Fixtures shared by the test modules; the plain helpers they use live in ``helpers.py`` (importable by tests)."""
from __future__ import annotations

from pathlib import Path

import pytest

from helpers import REPO

#: Fixtures of the bad-input suites (the shared work folder ``ws``, signal handlers restored after each test).
pytest_plugins = ['bad_inputs']


@pytest.fixture(scope='session')
def repo_root() -> Path:
    """The repository root."""
    return REPO


@pytest.fixture(scope='session')
def tiny_coco(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny mini-COCO dataset of ``tiny_mini_coco.TINY_SPEC`` (16 train / 4 val 64x64 images), generated once per
    session. Read-only: a test that changes the dataset generates its own with ``tiny_mini_coco.make_dataset``."""
    from tiny_mini_coco import make_dataset
    return make_dataset(tmp_path_factory.mktemp('tiny_coco') / 'mini')
