"""Run the repository's Python tools from the tests as separate processes without paying the mmdet import each time.

Every tool imports ``shufflenet_det`` (and so ``mmdet.models``, ``mmcv``, ``torch``): about 5 s of a 2-core machine
per run, and the tool tests run a few hundred tools. A *zygote* is one server process, started on first use, that
imports those packages once and then forks a fresh child for every run: the child sets the run's working directory,
environment, ``sys.argv``, ``sys.path[0]`` and standard streams, executes the script as ``__main__`` (``runpy``) and
exits with the status a fresh ``python script.py`` would have (``SystemExit`` codes, 1 and a traceback on an uncaught
exception, death by SIGINT on an uncaught ``KeyboardInterrupt``, atexit handlers and non-daemon threads honoured).
So each run is still its own process: exit status, signals, files and crashes are as a user sees them.

What a fork cannot reproduce falls back to a real ``subprocess.run``, transparently: non-script command lines
(``-c``, ``-m``, bash), an environment that differs in a variable read at interpreter or library start (``PYTHON*``,
``OMP_*``, ``MKL_*``, ``LD_*``, ...), and runs while the zygote is unavailable. ``SHUFFLENET_DET_TEST_NO_ZYGOTE=1``
makes every run a real subprocess (the reference behaviour, for debugging a difference).

The zygote only imports before it forks (no thread pool or session exists yet), so the children start from the
state a fresh interpreter reaches after its imports.
"""
from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
#: What the zygote imports before it serves (what every tool imports anyway).
PRELOAD = ('torch', 'mmengine.runner', 'mmdet.apis', 'shufflenet_det')
#: The environment every zygote run starts from, on top of the test process's (the tool tests' standard settings).
BASE_ENV = dict(OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore')
#: Variables read when the interpreter or a native library starts: a run that changes one needs a real process.
_STARTUP_PREFIXES = ('PYTHON', 'OMP_', 'MKL_', 'OPENBLAS_', 'KMP_', 'GOMP_', 'LD_', 'MALLOC_', 'CUDA_', 'TORCH_CUDA')
_DISABLE_ENV = 'SHUFFLENET_DET_TEST_NO_ZYGOTE'


# ------------------------------------------------------------------------------------------------------------ server
def _exit_status(code: Any) -> int:
    """The exit status of ``sys.exit(code)``, as the interpreter computes it."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _run_script(req: dict[str, Any]) -> None:
    """In the forked child: become ``python <script> <args>`` and never return."""
    status = 1
    try:
        os.setsid()  # its own process group: a timeout kills the tool and whatever it started
        os.chdir(req['cwd'])
        os.environ.clear()
        os.environ.update(req['env'])
        for fd, path, mode in ((0, req['stdin'], os.O_RDONLY), (1, req['stdout'], os.O_WRONLY),
                               (2, req['stderr'], os.O_WRONLY)):
            os.dup2(os.open(path, mode), fd)
        for name in ('SIGINT', 'SIGTERM', 'SIGCHLD', 'SIGHUP'):
            signal.signal(getattr(signal, name), signal.default_int_handler if name == 'SIGINT' else signal.SIG_DFL)
        script = os.path.abspath(req['args'][0])
        sys.argv = [req['args'][0], *req['args'][1:]]
        sys.path[0] = os.path.dirname(script)
        import runpy
        try:
            runpy.run_path(script, run_name='__main__')
            status = 0
        except SystemExit as exc:
            status = _exit_status(exc.code)
        except KeyboardInterrupt:
            import traceback
            traceback.print_exc()
            status = -signal.SIGINT
        except BaseException:  # noqa: BLE001 - what the interpreter does with any uncaught exception
            import traceback
            traceback.print_exc()
            status = 1
        threading._shutdown()  # type: ignore[attr-defined]  # join non-daemon threads, as at interpreter exit
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 - a closed stream: nothing left to flush
                pass
        if status == -signal.SIGINT:  # an uncaught KeyboardInterrupt ends the process by SIGINT
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
        os._exit(status)


def _handle(conn: socket.socket) -> None:
    """In a forked handler: read one request, fork the run, wait for it (with its timeout), answer, exit."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    req = json.loads(_recv(conn))
    pid = os.fork()
    if pid == 0:
        conn.close()
        _run_script(req)
    deadline = time.monotonic() + req['timeout']
    timed_out = False
    while True:
        done, wait_status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            timed_out = True
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            _, wait_status = os.waitpid(pid, 0)
            break
        time.sleep(0.02)
    conn.sendall(json.dumps(dict(returncode=os.waitstatus_to_exitcode(wait_status), timed_out=timed_out)).encode()
                 + b'\n')
    conn.close()
    os._exit(0)


def _recv(conn: socket.socket) -> bytes:
    data = b''
    while not data.endswith(b'\n'):
        chunk = conn.recv(65536)
        if not chunk:
            raise ConnectionError('the peer closed the connection mid-message')
        data += chunk
    return data


def serve(sock_path: str) -> None:
    """The zygote: import :data:`PRELOAD`, say ``ready``, then fork a handler for every connection."""
    import importlib
    for name in PRELOAD:
        importlib.import_module(name)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(sock_path)
    server.listen(64)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # handlers are reaped automatically
    print('ready', flush=True)
    while True:
        conn, _ = server.accept()
        sys.stdout.flush()
        sys.stderr.flush()
        if os.fork() == 0:
            server.close()
            try:
                _handle(conn)
            finally:
                os._exit(1)
        conn.close()


# ------------------------------------------------------------------------------------------------------------ client
class _Zygote:
    """The test process's handle on the server (started lazily, stopped at exit)."""

    def __init__(self) -> None:
        self.proc: Optional[subprocess.Popen] = None
        self.dir: Optional[Path] = None
        self.env: dict[str, str] = {}
        self.failed: Optional[str] = None
        self.lock = threading.Lock()

    def start(self) -> bool:
        with self.lock:
            if self.proc is not None or self.failed is not None:
                return self.proc is not None
            self.dir = Path(tempfile.mkdtemp(prefix='zygote-'))
            self.env = dict(os.environ, **BASE_ENV)
            self.env.pop('SHUFFLENET_DET_DEBUG', None)
            log = self.dir / 'zygote.log'  # the server's own stderr (a pipe nobody reads could fill up)
            with open(log, 'w') as err:
                proc = subprocess.Popen([sys.executable, __file__, str(self.dir / 'sock')], cwd=REPO, env=self.env,
                                        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, text=True)
            line = proc.stdout.readline() if proc.stdout else ''
            if line.strip() != 'ready':
                proc.kill()
                proc.communicate()
                self.failed = f'zygote did not start: {log.read_text()[-2000:]}'
                shutil.rmtree(self.dir, ignore_errors=True)
                return False
            self.proc = proc
            atexit.register(self.stop)
            return True

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.communicate()
            self.proc = None
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)

    def forkable(self, args: Sequence[str], env: dict[str, str]) -> bool:
        """A script run whose environment differs from the zygote's only in variables read at run time."""
        if not args or not str(args[0]).endswith('.py') or os.environ.get(_DISABLE_ENV) == '1':
            return False
        if not self.start():
            return False
        changed = {k for k in set(env) | set(self.env) if env.get(k) != self.env.get(k)}
        return not any(k.startswith(_STARTUP_PREFIXES) and k != 'PYTHON' for k in changed)

    def run(self, args: Sequence[str], cwd: Path, env: dict[str, str], timeout: float,
            input: Optional[str]) -> subprocess.CompletedProcess:
        assert self.dir is not None
        scratch = Path(tempfile.mkdtemp(prefix='run-', dir=self.dir))
        try:
            (scratch / 'in').write_text(input or '')
            req = dict(args=[str(a) for a in args], cwd=str(cwd), env=env, timeout=timeout,
                       stdin=str(scratch / 'in'), stdout=str(scratch / 'out'), stderr=str(scratch / 'err'))
            for name in ('out', 'err'):
                (scratch / name).touch()
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.connect(str(self.dir / 'sock'))
                conn.sendall(json.dumps(req).encode() + b'\n')
                reply = json.loads(_recv(conn))
            out, err = ((scratch / n).read_text(errors='replace') for n in ('out', 'err'))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        argv = [sys.executable, *map(str, args)]
        if reply['timed_out']:
            raise subprocess.TimeoutExpired(argv, timeout, output=out, stderr=err)
        return subprocess.CompletedProcess(argv, reply['returncode'], out, err)


_ZYGOTE = _Zygote()


def run_python(args: Sequence[str | os.PathLike], *, cwd: Path = REPO, env: Optional[dict[str, str]] = None,
               timeout: float = 300, input: Optional[str] = None) -> subprocess.CompletedProcess:
    """``subprocess.run([sys.executable, *args], capture_output=True, text=True, ...)``, through the zygote when the
    run allows it (see the module docstring). ``env`` defaults to the test process's plus :data:`BASE_ENV`."""
    env = dict(os.environ, **BASE_ENV) if env is None else dict(env)
    args = [str(a) for a in args]
    if _ZYGOTE.forkable(args, env):
        return _ZYGOTE.run(args, Path(cwd), env, timeout, input)
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, input=input)


if __name__ == '__main__':
    serve(sys.argv[1])
