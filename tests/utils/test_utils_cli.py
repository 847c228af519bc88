"""The tools' shared options and output checks (:mod:`shufflenet_det.utils.cli`)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from shufflenet_det.utils.cli import (
    ToolError,
    add_cfg_options_arg,
    add_config_arg,
    check_output_dir,
    check_output_path,
    refuse_input_overwrite,
    tool_parser,
)


def test_tool_parser_shared_options() -> None:
    parser = tool_parser('a tool', config='the config', work_dir='the work dir', cfg_options='overrides',
                         launcher='job launcher')
    parser.add_argument('checkpoint')
    args = parser.parse_args(['c.py', 'w.pth', '--cfg-options', 'a.b=1', 'c=[1,2]', '--local-rank', '3'])
    assert (args.config, args.checkpoint, args.work_dir) == ('c.py', 'w.pth', None)
    assert args.cfg_options == {'a.b': 1, 'c': [1, 2]}
    assert (args.launcher, args.local_rank) == ('none', 3)
    assert parser.parse_args(['c.py', 'w.pth', '--local_rank', '1', '--launcher', 'pytorch']).launcher == 'pytorch'
    with pytest.raises(SystemExit):
        parser.parse_args(['c.py', 'w.pth', '--launcher', 'ssh'])
    bare = tool_parser('no shared options')
    assert bare.parse_args([]) is not None and not hasattr(bare.parse_args([]), 'cfg_options')


def test_config_and_cfg_options_variants() -> None:
    parser = tool_parser('x')
    group = parser.add_argument_group('model')
    add_config_arg(group, 'configs', option=True, nargs='+', metavar='CFG')
    add_cfg_options_arg(group, default={})
    args = parser.parse_args(['--config', 'a.py', 'b.py'])
    assert args.config == ['a.py', 'b.py'] and args.cfg_options == {}
    required = tool_parser('y')
    add_config_arg(required, 'the config', option=True, required=True)
    with pytest.raises(SystemExit):
        required.parse_args([])


def test_output_checks(tmp_path: Path) -> None:
    existing = tmp_path / 'out.pth'
    existing.write_text('x')
    check_output_path(existing, 'OUT')  # the tool replaces it atomically
    check_output_path(existing, 'OUT', overwrite=True)
    with pytest.raises(ToolError, match=r"OUT '.*out.pth' already exists; pass --overwrite to replace it"):
        check_output_path(existing, 'OUT', overwrite=False)
    check_output_path(tmp_path / 'new' / 'deeper' / 'x.json', '--out', overwrite=False)  # creatable
    with pytest.raises(ToolError, match='is a folder; give a file path'):
        check_output_path(tmp_path, '--out')
    with pytest.raises(ToolError, match="cannot create its folder, '.*out.pth' is a file"):
        check_output_path(existing / 'x.json', '--out')
    with pytest.raises(ToolError, match='is a file, not a folder'):
        check_output_dir(existing, '--work-dir')
    with pytest.raises(ToolError, match='is the same file as --checkpoint'):
        refuse_input_overwrite([('--out', str(tmp_path / '.' / 'out.pth'))], [('--checkpoint', existing)])
    refuse_input_overwrite([('--out', None)], [('--checkpoint', existing)])


def test_output_checks_read_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ro = tmp_path / 'ro'
    ro.mkdir()
    ro.chmod(0o555)
    if os.access(ro, os.W_OK):  # root passes every permission check: answer as for any other user
        real = os.access
        monkeypatch.setattr(os, 'access', lambda p, mode, *a, **k: False if Path(p).resolve() == ro.resolve()
                            and mode & os.W_OK else real(p, mode, *a, **k))
    try:
        with pytest.raises(ToolError, match='not writable'):
            check_output_path(ro / 'x.json', '--out')
        with pytest.raises(ToolError, match='not writable'):
            check_output_dir(ro / 'wd', '--work-dir')
    finally:
        ro.chmod(0o755)


def test_build_model_and_registered_backbones() -> None:
    from shufflenet_det.utils.build import build_model, registered_backbones
    names = registered_backbones()
    assert {'ShuffleNetV1', 'ShuffleNetV2', 'DetNAS', 'DetNASSupernet', 'ShuffleNetV2Plus', 'OneShot',
            'ShuffleNetV2Large'} <= set(names)
    assert 'ResNet' not in names
    cfg = dict(type='ShuffleNetV2', widen_factor=0.5, out_indices=(3,), norm_cfg=dict(type='SyncBN'))
    model = build_model(cfg, revert_sync_bn=True)
    assert cfg['norm_cfg'] == dict(type='SyncBN')  # the caller's dict is untouched
    assert not any('SyncBatchNorm' in type(m).__name__ for m in model.modules())
