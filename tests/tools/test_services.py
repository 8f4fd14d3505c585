"""Service processes started by a script: none outlives a killed script or a `down`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tools.services import ROOT, stop_pids

pytestmark = pytest.mark.integration

STARTER = """
import asyncio, json, sys, time
from pathlib import Path
from tools.services import start_services, wait_ready
(service,) = start_services(["aftersales"], port_base=int(sys.argv[1]), log_dir=Path(sys.argv[2]))
asyncio.run(wait_ready([service], timeout=60))
print(json.dumps({"pid": service.process.pid}), flush=True)
time.sleep(600)
"""


def gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


def test_a_killed_starter_takes_its_services_with_it(
    infra: dict[str, str], prefix: str, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "HUITOU_KAFKA_BOOTSTRAP": infra["kafka"],
        "HUITOU_MONGO_URI": infra["mongo"],
        "HUITOU_TOPIC_PREFIX": prefix,
    }
    starter = subprocess.Popen(
        [sys.executable, "-c", STARTER, "18700", str(tmp_path)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert starter.stdout is not None
        line = starter.stdout.readline()
        assert line, (tmp_path / "aftersales.log").read_text(errors="replace")[-2000:]
        pid = json.loads(line)["pid"]
        starter.send_signal(signal.SIGKILL)  # no cleanup of its own can run
        starter.wait()
        assert gone_within(pid, 30), f"aftersales (pid {pid}) outlived its starter"
        log = (tmp_path / "aftersales.log").read_text(errors="replace")
        assert '"service_stopped"' in log
    finally:
        if starter.poll() is None:
            starter.kill()


def test_down_waits_for_each_service_and_kills_what_hangs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    quits = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    deaf = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('ready', flush=True); time.sleep(600)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert deaf.stdout is not None and deaf.stdout.readline() == "ready\n"
    stop_pids({"profile": quits.pid, "loyalty": deaf.pid}, timeout=2)
    assert quits.wait(timeout=5) == -signal.SIGTERM
    assert deaf.wait(timeout=5) == -signal.SIGKILL
    out = capsys.readouterr().out
    assert f"stopped profile (pid {quits.pid})" in out
    assert f"killed loyalty (pid {deaf.pid})" in out
