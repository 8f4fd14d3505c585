"""The service instances of one run: started, SIGKILLed and restarted, stopped with a stopwatch."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.demo import service_figures
from tools.services import ServiceProcess, start_services, wait_ready

INSTANCE_PORT_STEP = 10
"""Instance i of a service listens on port_base + 10 * i + its position (1-4)."""
SHUTDOWN_LIMIT_SECONDS = 30.0


@dataclass(slots=True)
class Instance:
    """One instance of a service: where it listens and logs, and its current process."""

    service: str
    index: int
    port_base: int
    log_dir: Path
    process: ServiceProcess
    starts: int = 1

    @property
    def name(self) -> str:
        """``loyalty#1``."""
        return f"{self.service}#{self.index}"


class Fleet:
    """``instances`` processes of each service, in one consumer group per service."""

    def __init__(
        self,
        services: Sequence[str],
        *,
        instances: int,
        port_base: int,
        log_dir: Path,
        env: dict[str, str],
    ) -> None:
        self._env = env
        self.instances: list[Instance] = []
        for index in range(instances):
            base = port_base + INSTANCE_PORT_STEP * index
            where = log_dir / f"instance-{index}"
            for process in start_services(services, port_base=base, log_dir=where, env=env):
                self.instances.append(Instance(process.name, index, base, where, process))

    async def ready(self, timeout: float = 120.0) -> None:
        """Wait until every instance answers /health/ready."""
        await wait_ready([i.process for i in self.instances], timeout=timeout)

    def kill(self, instance: Instance) -> None:
        """SIGKILL an instance and reap it."""
        with contextlib.suppress(ProcessLookupError):
            instance.process.process.send_signal(signal.SIGKILL)
        instance.process.process.wait()

    def restart(self, instance: Instance) -> None:
        """Start a stopped instance again on its port, appending to its log."""
        (instance.process,) = start_services(
            [instance.service],
            port_base=instance.port_base,
            log_dir=instance.log_dir,
            env=self._env,
        )
        instance.starts += 1

    async def figures(self) -> dict[str, list[dict[str, Any]]]:
        """Each running instance's /metrics totals and /stats, by service."""
        out: dict[str, list[dict[str, Any]]] = {}
        for instance in self.instances:
            figures = await service_figures(instance.process, self._env)
            out.setdefault(instance.service, []).append({"instance": instance.name, **figures})
        return out

    async def stop(self) -> tuple[dict[str, float], list[str]]:
        """SIGTERM every instance at once: seconds until each was gone, and those SIGKILLed
        because they were still there 30 s later."""
        began = time.monotonic()
        running = {i.name: i for i in self.instances if i.process.process.poll() is None}
        for instance in running.values():
            instance.process.process.send_signal(signal.SIGTERM)
        gone: dict[str, float] = {}
        while running and time.monotonic() - began < SHUTDOWN_LIMIT_SECONDS:
            for name, instance in list(running.items()):
                if instance.process.process.poll() is not None:
                    gone[name] = round(time.monotonic() - began, 2)
                    del running[name]
            await asyncio.sleep(0.1)
        for instance in running.values():
            self.kill(instance)
        return gone, sorted(running)
