"""The harness's own local infrastructure: deploy/local/infra.sh in its own state dir and ports."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tools.services import ROOT

INFRA_SH = ROOT / "deploy" / "local" / "infra.sh"
START_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class LocalInfra:
    """Kafka, FerretDB and PostgreSQL of one state dir, started and stopped as a whole or in part.

    ``part`` is one of ``kafka``, ``database`` (FerretDB and PostgreSQL), ``ferretdb``,
    ``postgres``. Calls run infra.sh in a thread, so the event loop (a replay, a kill schedule)
    goes on meanwhile; its output goes to ``<state>/chaos-infra.log``.
    """

    state_dir: Path
    kafka_port: int
    mongo_port: int

    @property
    def bootstrap(self) -> str:
        """The broker's address."""
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def mongo_uri(self) -> str:
        """The MongoDB-protocol server's address."""
        return f"mongodb://127.0.0.1:{self.mongo_port}"

    @property
    def log_path(self) -> Path:
        """Where infra.sh's output goes (outside the state dir, which a reset deletes)."""
        return self.state_dir.with_name(self.state_dir.name + "-infra.log")

    def _environment(self) -> dict[str, str]:
        return {
            **os.environ,
            "HUITOU_STATE_DIR": str(self.state_dir),
            "HUITOU_KAFKA_PORT": str(self.kafka_port),
            "HUITOU_KAFKA_CONTROLLER_PORT": str(self.kafka_port + 1),
            "HUITOU_MONGO_PORT": str(self.mongo_port),
        }

    def _run(self, *arguments: str) -> float:
        began = time.monotonic()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("a") as log:
            log.write(f"$ infra.sh {' '.join(arguments)}\n")
            log.flush()
            done = subprocess.run(
                [str(INFRA_SH), *arguments],
                env=self._environment(),
                stdout=log,
                stderr=subprocess.STDOUT,
                check=False,
            )
        if done.returncode != 0:
            tail = "\n".join(self.log_path.read_text(errors="replace").splitlines()[-8:])
            raise RuntimeError(f"infra.sh {' '.join(arguments)} failed:\n{tail}")
        return time.monotonic() - began

    async def fresh(self) -> float:
        """Delete this state dir's data and start everything anew; returns the seconds taken."""
        return await asyncio.to_thread(self._fresh)

    def _fresh(self) -> float:
        return self._run("reset") + self._start()

    def _start(self, *part: str) -> float:
        # The harness's ports may lie in the kernel's ephemeral range, where an outgoing
        # connection can hold one for a moment: a failed bind is tried again.
        for attempt in range(START_ATTEMPTS):
            try:
                return self._run("start", *part)
            except RuntimeError:
                if attempt == START_ATTEMPTS - 1:
                    raise
                time.sleep(2.0)
        raise AssertionError("unreachable")

    async def start(self, part: str | None = None) -> float:
        """Start everything, or one part (tried again if it fails); the seconds taken."""
        return await asyncio.to_thread(self._start, *([part] if part else []))

    async def stop(self, part: str | None = None) -> float:
        """Stop everything, or one part; returns the seconds taken."""
        return await asyncio.to_thread(self._run, "stop", *([part] if part else []))

    def reset_now(self) -> None:
        """Stop everything and delete this state dir's data (clean-up, synchronous)."""
        self._run("reset")
