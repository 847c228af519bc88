"""How every command line of the project ends: one clear message and a non-zero exit, never a traceback.

Tools call :func:`run_main` with their ``main``. Errors a user can cause and fix - a bad argument, a missing or
corrupt file, a config or checkpoint that does not fit, a full or read-only disk - end as ``error: <message>`` on
stderr with exit status 2 (1 for a failed check such as a parity or mAP target the tool reports itself). SIGTERM
and SIGINT unwind the program like an exception, so every atomic writer removes its temporary files
(:mod:`.io`) and nothing half-written is left; they exit with 143 and 130. ``--debug`` on the command
line (or ``SHUFFLENET_DET_DEBUG=1``) shows the full traceback instead.

A tool may also end with ``raise SystemExit('error: <message>')`` (what in-process callers and tests catch): it is
treated as a user error too - the message once, exit status 2, and with ``--debug`` the traceback of the exception
it was raised from.
"""
from __future__ import annotations

import errno
import os
import signal
import sys
import traceback
from typing import Any, Callable, NoReturn, Sequence

DEBUG_ENV = 'SHUFFLENET_DET_DEBUG'


class ToolError(Exception):
    """An error a tool reports as ``error: <message>`` (exit status ``code``)."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


class Interrupted(BaseException):
    """Raised in the main thread on SIGTERM / SIGINT so that ``finally`` blocks and atomic writers clean up."""

    def __init__(self, signum: int) -> None:
        super().__init__(f'interrupted by {signal.Signals(signum).name}')
        self.signum = signum


def fail(message: str, code: int = 2) -> NoReturn:
    """End the tool with ``error: message``."""
    raise ToolError(message, code)


def _raise_interrupted(signum: int, frame: Any) -> None:
    raise Interrupted(signum)


def install_signal_handlers() -> None:
    """SIGTERM and SIGINT raise :class:`Interrupted` (main thread only; elsewhere nothing is changed)."""
    try:
        signal.signal(signal.SIGTERM, _raise_interrupted)
        signal.signal(signal.SIGINT, _raise_interrupted)
    except ValueError:  # not the main thread
        pass


def _message(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename is not None:
        reason = {errno.ENOSPC: 'no space left on the device', errno.EROFS: 'the file system is read-only',
                  errno.EACCES: 'permission denied', errno.ENOENT: 'no such file or folder'}.get(
                      exc.errno or -1, exc.strerror or str(exc))
        return f'{exc.filename}: {reason}'
    text = str(exc).strip()
    if isinstance(exc, KeyError) and len(exc.args) == 1 and isinstance(exc.args[0], str):
        text = exc.args[0]
    return text or type(exc).__name__


class ReportedError(RuntimeError):
    """Base of the project's own errors that are not ValueErrors but describe the input, e.g. a failed export
    (``shufflenet_det.deploy.export_common.ExportError``): shown as a message."""


#: Exceptions that describe a user's input or environment (shown as a message). Anything else is a bug in this
#: project or a library and keeps its traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (ToolError, ValueError, FileNotFoundError, FileExistsError,
                                                IsADirectoryError, NotADirectoryError, PermissionError, ReportedError)


def run_main(main: Callable[[Sequence[str] | None], Any], argv: Sequence[str] | None = None) -> int:
    """Run a tool's ``main(argv)`` under the project's error policy (module docstring); return the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = os.environ.get(DEBUG_ENV) == '1' or '--debug' in args
    args = [a for a in args if a != '--debug']
    install_signal_handlers()
    try:
        result = main(args)
    except Interrupted as exc:
        print(f'error: {exc}; nothing half-written was left behind', file=sys.stderr)
        return 128 + exc.signum
    except SystemExit as exc:
        # ``raise SystemExit('error: ...')`` (tools that predate ToolError) is a user error too: exit status 2, the
        # message printed once. argparse's exits and ``sys.exit(<int>)`` pass through unchanged.
        if not isinstance(exc.code, str):
            raise
        if debug:  # the exception the tool turned into the message, else where the message was raised
            shown = exc.__cause__ or exc.__context__ or exc
            traceback.print_exception(type(shown), shown, shown.__traceback__, file=sys.stderr)
        text = exc.code.strip()
        print(text if text.startswith('error:') else f'error: {text}', file=sys.stderr)
        return 2
    except USER_ERRORS as exc:
        if debug:
            raise
        code = exc.code if isinstance(exc, ToolError) else 2
        print(f'error: {_message(exc)}', file=sys.stderr)
        return code
    except OSError as exc:  # a full or read-only disk, a broken pipe ...
        if debug or exc.errno not in (errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EIO, errno.EPIPE):
            raise
        print(f'error: {_message(exc)}', file=sys.stderr)
        return 2
    return result if isinstance(result, int) else 0
