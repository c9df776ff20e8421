"""One process of the system (worker, sink or gateway) run from a source tree, with its
log in a file, killable (SIGKILL: no shutdown hook) and restartable."""

import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from app.config import ROOT


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Service:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen | None = None
    tree: Path = ROOT  # the source tree it runs from (the benchmarks compare another commit's)

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(self.argv, cwd=self.tree, env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        """SIGKILL: no shutdown hook, no flush, no commit."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


WORKER_ARGV = [sys.executable, "-m", "app.worker", "worker", "-l", "info"]


def worker_argv(tree: Path) -> list[str]:
    """The worker's command line in `tree`; a checkout from before the worker moved to
    app/worker (benchmarks compare against older revisions) runs `app.agents.worker`."""
    if (tree / "app" / "worker" / "__main__.py").exists():
        return WORKER_ARGV
    return [sys.executable, "-m", "app.agents.worker", "worker", "-l", "info"]


def worker_service(name: str, workdir: Path, env: dict[str, str], tree: Path = ROOT) -> Service:
    """A worker process with a data dir of its own (workdir/name) unless env names one.
    Unbuffered, so that a worker killed with SIGKILL leaves its last log lines. `tree`:
    another checkout of the project to run the worker from (its `app` package is found
    first, from the working directory; the virtualenv is this one's)."""
    env = {**os.environ, "WORKER_DATADIR": str(workdir / name), "PYTHONUNBUFFERED": "1", "WORKER_HTTP_PORT": "0",
           **env}
    return Service(name, worker_argv(tree), env, workdir / f"{name}.log", tree=tree)
