"""Run one of MMDetection's own tools (``train.py``, ``test.py``, ...) with this plugin imported first.

mmdet ships its command-line tools inside the installed package (``mmdet/.mim/tools``). They take a config whose
``custom_imports=dict(imports=['shufflenet_det'])`` registers the backbones - but config files are parsed before
their ``custom_imports`` run, so a config that *inherits* this package's configs by name
(``_base_ = 'shufflenet_det::shufflenetv2/retinanet_shufflenetv2-1x_fpn_1x_coco.py'``) needs the plugin imported
before mmdet's tool reads it (mmengine 0.10.x resolves ``pkg::`` names only for packages it knows; see
:mod:`shufflenet_det.compat`). This runs mmdet's own tool, unchanged, after ``import shufflenet_det``::

    python -m shufflenet_det.apps.mmdet_tool train my_config.py --work-dir work_dirs/mine [--resume]
    python -m shufflenet_det.apps.mmdet_tool test my_config.py work_dirs/mine/epoch_12.pth

Errors follow the project's tool policy (:mod:`shufflenet_det.utils.cli`): ``error: <message>``, exit status 2, no
traceback (``--debug`` shows it).
"""
from __future__ import annotations

import os
import runpy
import sys
from pathlib import Path
from typing import Optional, Sequence

from ..utils.cli import fail, run_main


def mmdet_tools_dir() -> Path:
    """The ``tools`` folder shipped inside the installed mmdet package."""
    import mmdet
    return Path(os.path.dirname(os.path.abspath(mmdet.__file__))) / '.mim' / 'tools'


def mmdet_tool_path(name: str) -> Path:
    """``mmdet/.mim/tools/<name>.py`` (``name`` may name a sub-folder: ``analysis_tools/get_flops``)."""
    tools = mmdet_tools_dir()
    path = tools / f'{name.removesuffix(".py")}.py'
    if not path.is_file():
        available = sorted(str(p.relative_to(tools).with_suffix('')) for p in tools.rglob('*.py')
                           if '__pycache__' not in p.parts)
        raise ValueError(f'mmdet has no tool {name!r} in {tools}; available: {available}')
    return path


def check_config_argument(args: Sequence[str]) -> None:
    """End the tool naming the config when the tool's first argument is a config file (``.py``, ``.json`` ...) that
    does not exist (mmdet's tools would show a FileNotFoundError traceback); package names (``pkg::...``) are left to
    mmengine."""
    from ..utils.build import CONFIG_SUFFIXES
    config = args[0] if args and not args[0].startswith('-') else None
    if config and '::' not in config and Path(config).suffix in CONFIG_SUFFIXES and not os.path.isfile(config):
        fail(f'config {config!r} does not exist' + (' (it is a folder)' if os.path.isdir(config) else ''))


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``TOOL [ARGS...]``: run mmdet's ``TOOL`` with ``ARGS`` after importing shufflenet_det."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ('-h', '--help'):
        print(__doc__)
        return 0 if args else 2
    try:
        path = mmdet_tool_path(args[0])
    except ValueError as exc:
        fail(str(exc))
    check_config_argument(args[1:])
    # the package's __init__ (run before this module) registered the models and the shufflenet_det:: config names
    sys.argv = [str(path), *args[1:]]
    runpy.run_path(str(path), run_name='__main__')
    return 0


if __name__ == '__main__':
    sys.exit(run_main(main))
