"""The command-line layer every tool shares.

The error policy (how a tool ends: one ``error:`` line and exit status 2 for a user error, 1 for a failed check,
130 / 143 on SIGINT / SIGTERM with nothing half-written left behind) is :mod:`shufflenet_det.runtime.errors`, which
the torch-free board runners use as well; it is re-exported here for the tools.
"""
from __future__ import annotations

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

__all__ = ['DEBUG_ENV', 'USER_ERRORS', 'Interrupted', 'ReportedError', 'ToolError', 'fail', 'install_signal_handlers',
           'run_main']
