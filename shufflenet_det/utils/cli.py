"""The command-line layer every tool shares: the error policy, the shared options and the output checks.

The error policy (how a tool ends: one ``error:`` line and exit status 2 for a user error, 1 for a failed check,
130 / 143 on SIGINT / SIGTERM with nothing half-written left behind) is :mod:`shufflenet_det.runtime.errors`, which
the torch-free board runners use as well; it is re-exported here for the tools.

The options several tools take are declared here once, in the spirit of detectron2's ``default_argument_parser()``:
:func:`tool_parser` makes a tool's parser with the shared options it asks for (a config, ``--cfg-options``,
``--work-dir``, ``--launcher`` / ``--local-rank``), and the ``add_*_arg(s)`` functions add one of them where a tool
needs it elsewhere (an argument group, an optional ``--config``, a tool-specific ``--cfg-options`` action). Each takes
the tool's own help text, so ``--help`` still describes what the option means for that tool.

The output checks run before any long work, so that a bad output path fails in seconds and leaves nothing:
:func:`check_output_path` (a file to write: not a folder, its folder writable or creatable, and with ``overwrite``
given, refused when it exists unless ``--overwrite``), :func:`check_output_dir` (an output folder) and
:func:`refuse_input_overwrite` (an output that is one of the tool's inputs). Nothing here imports torch or mmdet.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, Iterable, Optional

from ..runtime.errors import (
                              DEBUG_ENV,
                              USER_ERRORS,
                              Interrupted,
                              ReportedError,
                              ToolError,
                              fail,
                              install_signal_handlers,
                              run_main,
)
from .io import same_file

__all__ = ['DEBUG_ENV', 'USER_ERRORS', 'Interrupted', 'ReportedError', 'ToolError', 'fail', 'install_signal_handlers',
           'run_main', 'LAUNCHERS', 'CFG_OPTIONS_HELP', 'tool_parser', 'add_config_arg', 'add_cfg_options_arg',
           'add_work_dir_arg', 'add_launcher_args', 'add_overwrite_arg', 'check_output_path', 'check_output_dir',
           'refuse_input_overwrite']

#: The job launchers of mmdet's train / test tools (``--launcher``).
LAUNCHERS = ('none', 'pytorch', 'slurm', 'mpi')
#: The help of ``--cfg-options`` where a tool has nothing to add.
CFG_OPTIONS_HELP = 'override config settings, key=value'

#: What ``add_argument`` is called on: a parser or one of its argument groups.
ArgContainer = argparse._ActionsContainer


def tool_parser(description: Optional[str] = None, *, config: Optional[str] = None,
                cfg_options: Optional[str] = None, work_dir: Optional[str] = None, launcher: Optional[str] = None,
                formatter_class: type[argparse.HelpFormatter] = argparse.HelpFormatter,
                epilog: Optional[str] = None) -> argparse.ArgumentParser:
    """A tool's parser with the shared options it names, each given as its help text (None: the tool has none).

    ``config``: the positional ``config`` (first, so the tool's own positionals follow it); ``cfg_options``:
    ``--cfg-options KEY=VALUE ...`` parsed by mmengine's ``DictAction`` (default None); ``work_dir``: ``--work-dir``
    (default None); ``launcher``: ``--launcher {none,pytorch,slurm,mpi}`` (default none) with ``--local_rank`` /
    ``--local-rank`` (default 0), as mmdet's train and test tools. The tool adds its own arguments to the result.
    """
    parser = argparse.ArgumentParser(description=description, formatter_class=formatter_class, epilog=epilog)
    if config is not None:
        add_config_arg(parser, config)
    if work_dir is not None:
        add_work_dir_arg(parser, work_dir)
    if cfg_options is not None:
        add_cfg_options_arg(parser, cfg_options)
    if launcher is not None:
        add_launcher_args(parser, launcher)
    return parser


def add_config_arg(parser: ArgContainer, help: str, *, option: bool = False, required: bool = False,
                   nargs: Optional[str] = None, metavar: Optional[str] = None, default: Any = None) -> argparse.Action:
    """The config argument: the positional ``config`` (``nargs='?'``: optional), or with ``option`` the option
    ``--config`` (``required``, ``nargs='+'``: several configs)."""
    kwargs: dict[str, Any] = dict(help=help)
    if nargs is not None:
        kwargs['nargs'] = nargs
    if metavar is not None:
        kwargs['metavar'] = metavar
    if not option:
        return parser.add_argument('config', **kwargs)
    return parser.add_argument('--config', required=required, default=default, **kwargs)


def add_cfg_options_arg(parser: ArgContainer, help: str = CFG_OPTIONS_HELP, *, default: Any = None,
                        metavar: Optional[str] = None, action: Optional[type[argparse.Action]] = None
                        ) -> argparse.Action:
    """``--cfg-options KEY=VALUE ...``: config overrides parsed by mmengine's ``DictAction`` (or ``action``, e.g. a
    subclass of it), merged into the config by :func:`shufflenet_det.utils.build.load_config`."""
    if action is None:
        from mmengine.config import DictAction
        action = DictAction
    kwargs: dict[str, Any] = dict(nargs='+', action=action, default=default, help=help)
    if metavar is not None:
        kwargs['metavar'] = metavar
    return parser.add_argument('--cfg-options', **kwargs)


def add_work_dir_arg(parser: ArgContainer, help: str, *, required: bool = False) -> argparse.Action:
    """``--work-dir``: the tool's output folder (check it with :func:`check_output_dir` before any long work)."""
    return parser.add_argument('--work-dir', required=required, help=help)


def add_launcher_args(parser: ArgContainer, help: str) -> None:
    """``--launcher`` (default none) and ``--local_rank`` / ``--local-rank`` (default 0: what
    ``torch.distributed.launch`` passes; :func:`shufflenet_det.apps.launch.start_tool` sets ``LOCAL_RANK`` from
    it), as mmdet's train and test tools."""
    parser.add_argument('--launcher', choices=list(LAUNCHERS), default='none', help=help)
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def add_overwrite_arg(parser: ArgContainer, help: str) -> argparse.Action:
    """``--overwrite``: let the tool replace an existing output (see :func:`check_output_path`)."""
    return parser.add_argument('--overwrite', action='store_true', help=help)


def refuse_input_overwrite(outputs: Iterable[tuple[str, Any]], inputs: Iterable[tuple[str, Any]]) -> None:
    """End the tool when an output path is one of its input files (``(option, path)`` pairs; None entries skipped).

    An export written over its own checkpoint, or a report written over the model it describes, would destroy the
    input the run reads (or has just read); the message names both options.
    """
    ins = [(name, Path(p)) for name, p in inputs if p]
    for out_name, out in outputs:
        if not out:
            continue
        for in_name, path in ins:
            if same_file(out, path):
                fail(f'{out_name} {str(out)!r} is the same file as {in_name} {str(path)!r}: refusing to overwrite '
                     'an input; choose another output path')


def _check_creatable(path: Any, option: str, folder: Path, what: str) -> None:
    """End the tool unless ``folder`` exists as a writable folder or can be created below its nearest existing
    ancestor, which must be one (``what``: how the message calls the thing to create)."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        fail(f'{option} {str(path)!r}: cannot create {what}, {str(folder)!r} is a file')
    if not os.access(folder, os.W_OK | os.X_OK):
        fail(f'{option} {str(path)!r}: folder {str(folder)!r} is not writable')


def check_output_path(path: Any, option: str, *, overwrite: Optional[bool] = None) -> None:
    """End the tool unless ``path`` can be written: not a folder, and its folder exists and is writable or can be
    created (nothing is created here). With ``overwrite`` given (the tool's ``--overwrite``), a path that exists is
    refused unless it is True; None: the tool replaces its outputs anyway (atomically). Run before any long work,
    so that a bad output path fails in seconds. ``path`` None or empty: nothing to check."""
    if not path:
        return
    target = Path(path).expanduser().absolute()
    if target.is_dir():
        fail(f'{option} {str(path)!r} is a folder; give a file path')
    if overwrite is False and (target.exists() or target.is_symlink()):
        fail(f'{option} {str(path)!r} already exists; pass --overwrite to replace it')
    _check_creatable(path, option, target.parent, 'its folder')


def check_output_dir(path: Any, option: str) -> None:
    """End the tool unless the folder ``path`` can be used for outputs: a folder already, or creatable below its
    nearest existing ancestor, which must be a writable folder (nothing is created here). Run before any long work
    (a dataset generated, a model built) so that a work dir below a file fails in seconds and leaves nothing."""
    if not path:
        return
    target = Path(path).expanduser().absolute()
    if target.exists() and not target.is_dir():
        fail(f'{option} {str(path)!r} is a file, not a folder')
    _check_creatable(path, option, target, 'it')
