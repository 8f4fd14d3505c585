"""Run the services as processes on this machine: start, wait until ready, stop.

python -m tools.services up      start every service, record their pids, leave them running
python -m tools.services down    stop the services `up` started
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
# Fixed order: port = base + position (profile 8001, loyalty 8002, care 8003, aftersales 8004).
SERVICE_ORDER = ("profile", "loyalty", "care", "aftersales")


def available_services() -> list[str]:
    """The services that exist in this checkout (a package with a __main__)."""
    return [s for s in SERVICE_ORDER if (ROOT / "services" / s / "__main__.py").exists()]


def service_port(name: str, base: int) -> int:
    """HTTP port of a service: base + its position in SERVICE_ORDER (1-based)."""
    return base + SERVICE_ORDER.index(name) + 1


@dataclass
class ServiceProcess:
    """A running service and where to reach it."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


PR_SET_PDEATHSIG = 1


def _tie_to_parent() -> Callable[[], None]:
    """What the child runs before exec: SIGTERM when the starting process dies (Linux).

    libc's prctl is looked up here, in the parent: the child only calls it.
    """
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def tie() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

    return tie


def start_services(
    names: Sequence[str],
    *,
    port_base: int,
    log_dir: Path,
    env: dict[str, str] | None = None,
    outlive_parent: bool = False,
) -> list[ServiceProcess]:
    """Start each service as `python -m services.<name>`, logs to files.

    Unless ``outlive_parent`` (`./huitou up`), a service gets SIGTERM when the process that
    started it dies, even by SIGKILL: a killed demo or benchmark leaves no consumer behind.
    """
    tie = None if outlive_parent or not sys.platform.startswith("linux") else _tie_to_parent()
    log_dir.mkdir(parents=True, exist_ok=True)
    started: list[ServiceProcess] = []
    for name in names:
        port = service_port(name, port_base)
        log_path = log_dir / f"{name}.log"
        child_env = {
            **os.environ,
            **(env or {}),
            "HUITOU_HTTP_PORT": str(port),
            "HUITOU_LOG_FORMAT": "json",
        }
        with log_path.open("ab") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", f"services.{name}"],
                cwd=ROOT,
                env=child_env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=tie,
            )
        started.append(ServiceProcess(name, port, process, log_path))
    return started


async def wait_ready(services: Sequence[ServiceProcess], *, timeout: float = 60.0) -> None:
    """Wait until every service answers /health/ready with 200; raise with its log tail if not."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=2.0) as client:
        for service in services:
            while True:
                if service.process.poll() is not None:
                    raise RuntimeError(
                        f"{service.name} exited with {service.process.returncode}:\n"
                        + _tail(service.log_path)
                    )
                try:
                    response = await client.get(f"{service.url}/health/ready")
                    if response.status_code == 200:
                        break
                except httpx.TransportError:
                    pass  # not listening yet
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"{service.name} not ready after {timeout}s:\n" + _tail(service.log_path)
                    )
                await asyncio.sleep(0.2)


def stop_services(services: Sequence[ServiceProcess], *, timeout: float = 20.0) -> None:
    """SIGTERM each service, wait for a clean stop, SIGKILL what hangs, and reap them."""
    running = {s.name: s.process.pid for s in services if s.process.poll() is None}
    stop_pids(running, timeout=timeout, say=lambda _: None)
    for service in services:
        service.process.wait()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # an exited child of ours that nobody reaped yet is gone too
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return True


def stop_pids(
    pids: dict[str, int], *, timeout: float = 30.0, say: Callable[[str], None] = print
) -> None:
    """SIGTERM services started by an earlier `up`, wait until they are gone, SIGKILL stragglers.

    A service bounds its own shutdown (``HUITOU_SHUTDOWN_SECONDS``); the wait makes sure no
    instance outlives `down` and joins the next `up`'s consumer groups.
    """
    running = {}
    for name, pid in pids.items():
        try:
            os.kill(pid, signal.SIGTERM)
            running[name] = pid
        except ProcessLookupError:
            say(f"{name} (pid {pid}) was not running")
    deadline = time.monotonic() + timeout
    while running and time.monotonic() < deadline:
        for name, pid in list(running.items()):
            if not _alive(pid):
                say(f"stopped {name} (pid {pid})")
                del running[name]
        time.sleep(0.2)
    for name, pid in running.items():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        say(f"killed {name} (pid {pid}): still running {timeout:.0f} s after SIGTERM")


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as error:
        return f"(no log: {error})"


def _pid_file() -> Path:
    cache = Path(os.environ.get("HUITOU_CACHE", Path.home() / ".cache" / "huitou"))
    state = Path(os.environ.get("HUITOU_STATE_DIR", cache / "local"))
    return state / "services.json"


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m tools.services", description=__doc__)
    parser.add_argument("command", choices=["up", "down"])
    parser.add_argument("--port-base", type=int, default=8000)
    args = parser.parse_args(argv)
    pid_file = _pid_file()
    if args.command == "up":
        from tools.topics import create_topics

        bootstrap = os.environ.get("HUITOU_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
        asyncio.run(create_topics(bootstrap))
        services = start_services(
            available_services(),
            port_base=args.port_base,
            log_dir=pid_file.parent / "logs",
            outlive_parent=True,
        )
        asyncio.run(wait_ready(services))
        pid_file.write_text(json.dumps({s.name: s.process.pid for s in services}))
        for s in services:
            print(f"{s.name:<11} {s.url}  (log {s.log_path})")
        print("stop with: ./huitou down")
    else:
        if not pid_file.exists():
            print("no services recorded as running")
            return
        stop_pids(json.loads(pid_file.read_text()))
        pid_file.unlink()


if __name__ == "__main__":
    main()
