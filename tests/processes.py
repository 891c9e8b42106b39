"""Test helpers that run things as a user does: the ``cfprune`` command in its own process, and a
Dask scheduler with workers started by the ``dask`` command line in processes of their own."""

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-c", "import sys; from cfprune.cli import main; sys.exit(main())"]


def process_env(**extra):
    """The environment of a child process: this one, with this checkout first on PYTHONPATH."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_cli(*args, shell_prefix=None, env=None, umask=None, timeout=300, cwd=None):
    """``cfprune ARGS`` in a new process; the CompletedProcess with text stdout and stderr.

    ``shell_prefix`` (e.g. ``"ulimit -f 1"``) runs the command through ``bash -c`` after it;
    ``umask`` sets the child's umask."""
    command = CLI + [str(a) for a in args]
    if shell_prefix is not None:
        command = ["bash", "-c", f"{shell_prefix}; exec {shlex.join(command)}"]
    preexec = None if umask is None else (lambda: os.umask(umask))
    return subprocess.run(command, capture_output=True, text=True, env=env or process_env(),
                          timeout=timeout, cwd=cwd, preexec_fn=preexec)


def free_port():
    """A TCP port on 127.0.0.1 free at the time of the call."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DaskProcesses:
    """``dask scheduler`` and ``n_workers`` ``dask worker --nthreads 1`` processes on 127.0.0.1,
    each in its own process group (so :meth:`close` kills a worker's nanny and its child)."""

    def __init__(self, log_dir, n_workers=2, timeout=90):
        self.log_dir = Path(log_dir)
        self.procs = []
        port = free_port()
        self.address = f"tcp://127.0.0.1:{port}"
        try:
            scheduler = self._start("scheduler", ["scheduler", "--host", "127.0.0.1", "--port",
                                                  str(port), "--no-dashboard"])
            self._wait_for(scheduler, "scheduler", "Scheduler at:", timeout)
            workers = [self._start(f"worker{w}", ["worker", self.address, "--nthreads", "1",
                                                  "--host", "127.0.0.1", "--no-dashboard",
                                                  "--local-directory", str(self.log_dir / f"w{w}")])
                       for w in range(n_workers)]
            for w, worker in enumerate(workers):
                self._wait_for(worker, f"worker{w}", "Registered to:", timeout)
        except BaseException:
            self.close()
            raise

    def _start(self, name, args):
        log = open(self.log_dir / f"{name}.log", "wb")
        proc = subprocess.Popen([sys.executable, "-m", "dask", *args], stdout=log,
                                stderr=subprocess.STDOUT, env=process_env(),
                                start_new_session=True)
        log.close()
        self.procs.append(proc)
        return proc

    def _wait_for(self, proc, name, text, timeout):
        log = self.log_dir / f"{name}.log"
        deadline = time.monotonic() + timeout
        while text not in log.read_text(errors="replace"):
            if proc.poll() is not None:
                raise RuntimeError(f"dask {name} exited: {log.read_text(errors='replace')}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"dask {name} not ready in {timeout} s: "
                                   f"{log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.2)

    def close(self):
        """Terminate every process group (workers first), then kill what is left."""
        for proc in reversed(self.procs):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # the group may outlive its leader
            except ProcessLookupError:
                pass
            proc.wait()
        self.procs = []
