"""The exactness harness's small form: 300 customers, every kind of run, compared with clean.

The harness restarts Kafka and the database in every run, so it cannot use the suite's
infrastructure: it runs its own (deploy/local/infra.sh) in a temporary state dir on ports of
its own, and deletes it afterwards. One module fixture runs the harness once; the tests read
its report.

What holds today is asserted as such. What does not hold yet (issue 10: every disrupted run
differs from the clean one) is one strict xfail naming what differs, so that a run which
comes out identical fails the mark and it must come off.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tools.chaos import RUN_KINDS, HarnessConfig, RunResult, run_harness
from tools.chaos.infra import LocalInfra

pytestmark = pytest.mark.integration

CUSTOMERS = 300
PORT_BASE = 18640
DISRUPTED = [k for k in RUN_KINDS if k != "clean"]

# Identical to the clean run in every run of 2026-12-03 (300 customers, commit 2d87854, then
# tickets since complaints wait for their sale): the services' own records of customers,
# purchases, tickets and sales, and the topics whose events follow from single events.
# Everything else differs today (see the xfail below).
IDENTICAL_TODAY = frozenset(
    {
        "state aftersales.quality_alerts",
        "state aftersales.repairs",
        "state aftersales.sales",
        "state aftersales.tickets",
        "topic aftersales.tickets.v1",
        "state care.contacts",
        "state care.customers",
        "state care.markers",
        "state care.purchases",
        "state care.rankings",
        "state loyalty.expiries_due",
        "state loyalty.loyalty_state",
        "state loyalty.walk_in_purchases",
        "state profile.audit",
        "state profile.customers",
        "state profile.figures",
        "state profile.shared_phones",
        "stats aftersales",
        "stats profile",
        "topic aftersales.dlq.v1",
        "topic aftersales.quality.v1",
        "topic aftersales.sales.v1",
        "topic aftersales.triage.v1",
        "topic aftersales.warehouse.v1",
        "topic care.dlq.v1",
        "topic loyalty.commands.v1",
        "topic profile.dlq.v1",
    }
)


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ports() -> tuple[int, int]:
    """A Kafka port (and the controller's, +1) and a MongoDB port nobody listens on."""
    for kafka in range(31192, 31292, 10):
        mongo = kafka - 75
        if _free(kafka) and _free(kafka + 1) and _free(mongo):
            return kafka, mongo
    pytest.fail("no free ports for the harness's infrastructure in 31117-31292", pytrace=False)


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The harness run once at 300 customers: the report, and each run's result by kind."""
    kafka, mongo = _ports()
    state = Path(tmp_path_factory.mktemp("chaos")) / "state"
    config = HarnessConfig(
        state_dir=state,
        kafka_port=kafka,
        mongo_port=mongo,
        port_base=PORT_BASE,
        customers=CUSTOMERS,
        start=datetime.now(UTC).date() - timedelta(days=365),
        kills=4,
        outage_seconds=3.0,
        quiet_seconds=5.0,
        # A write a SIGKILL cut is published by profile's leftovers job once its intent is
        # older than INTENT_GRACE (2 min) and its minute has ended: up to ~3.2 min.
        settle_timeout=240.0,
        catch_up_timeout=240.0,
    )
    try:
        report, results = asyncio.run(run_harness(config))
        yield {"report": report, "runs": {r["kind"]: r for r in report["runs"]}, "results": results}
    finally:
        LocalInfra(state, kafka, mongo).reset_now()


def run_of(harness: dict[str, Any], kind: str) -> dict[str, Any]:
    run: dict[str, Any] = harness["runs"][kind]
    assert run["error"] is None, run["error"]
    return run


@pytest.mark.parametrize("kind", RUN_KINDS)
def test_every_run_replays_the_whole_chain_and_catches_up(
    harness: dict[str, Any], kind: str
) -> None:
    run = run_of(harness, kind)
    assert run["published"] == harness["report"]["config"]["records"]
    assert run["publish_failed"] == 0
    assert run["caught_up"], run["lags"]
    assert all(n == 0 for n in run["lags"].values()), run["lags"]
    assert all(n == 0 for n in run["backlog"].values()), run["backlog"]


@pytest.mark.parametrize("kind", RUN_KINDS)
def test_every_run_settles(harness: dict[str, Any], kind: str) -> None:
    run = run_of(harness, kind)
    assert run["settled"], (run["lags"], run["backlog"], run["seconds"])


@pytest.mark.parametrize("kind", RUN_KINDS)
def test_nothing_is_lost(harness: dict[str, Any], kind: str) -> None:
    """Every record each service consumes was processed or dead-lettered, none skipped.

    With instances SIGKILLed their counts died with them: there, every group's committed
    offsets at the end of every topic (caught up) is what is checked.
    """
    run = run_of(harness, kind)
    assert run["caught_up"]
    for service, figures in run["accounting"].items():
        if run["metrics_complete"]:
            assert figures["unaccounted"] is not None
            # Below 0 would be records handled twice, which a restart may cause; above, lost.
            assert figures["unaccounted"] <= 0, (service, figures)
            if kind in ("clean", "interleaved"):
                assert figures["unaccounted"] == 0, (service, figures)
        assert figures["records_in"] > 0


@pytest.mark.parametrize("kind", RUN_KINDS)
def test_a_repeated_event_id_always_carries_the_same_event(
    harness: dict[str, Any], kind: str
) -> None:
    run = run_of(harness, kind)
    assert run["conflicting_duplicates"] == {}


@pytest.mark.parametrize("kind", ["clean", "interleaved"])
def test_without_crashes_no_output_topic_carries_an_event_id_twice(
    harness: dict[str, Any], kind: str
) -> None:
    """Crashes and outages may make a writer publish again what it published before dying
    (the same event: asserted above); without them nothing is published twice."""
    run = run_of(harness, kind)
    assert {t: n for t, n in run["duplicates"].items() if n} == {}, run["duplicate_examples"]


@pytest.mark.parametrize("kind", DISRUPTED)
def test_what_is_exact_today_stays_exact(harness: dict[str, Any], kind: str) -> None:
    run = run_of(harness, kind)
    differing = {
        name: f"{c['differing']} differ, {c['missing']} missing, {c['extra']} extra: "
        + "; ".join(f"{d['key']} {d['paths'][0]}" for d in c["differ_examples"][:1])
        for name, c in run["comparison"].items()
        if name in IDENTICAL_TODAY and (c["differing"] or c["missing"] or c["extra"])
    }
    assert differing == {}, "\n".join(f"{n}: {why}" for n, why in sorted(differing.items()))
    assert set(run["comparison"]) >= IDENTICAL_TODAY, "a compared collection or topic is gone"


@pytest.mark.xfail(
    reason="issue 10, 2026-12-03: every disrupted run differs from the clean one in loyalty "
    "(ledger points, accounts' balances and tier_since, tier changes, points' balance_after, "
    "referrals dead-lettered), care.outreach, and profile's event ids (they carry record "
    "versions): decisions taken at processing time, in arrival order",
    strict=True,
)
@pytest.mark.parametrize("kind", DISRUPTED)
def test_every_run_leaves_the_clean_runs_state_and_outputs(
    harness: dict[str, Any], kind: str
) -> None:
    run = run_of(harness, kind)
    assert run["identical_to_clean"], sorted(
        name for name, c in run["comparison"].items() if c["differing"] or c["missing"]
    )


def test_services_stop_within_30_s_of_sigterm(harness: dict[str, Any]) -> None:
    for kind, run in harness["runs"].items():
        assert run["shutdown_stragglers"] == [], kind
        assert max(run["shutdown_seconds"].values()) < 30, (kind, run["shutdown_seconds"])


def test_the_kill_run_killed_and_restarted_instances(harness: dict[str, Any]) -> None:
    run = run_of(harness, "kill")
    kills = [e for e in run["events"] if e["what"] == "SIGKILL"]
    assert len(kills) == 4
    assert len([e for e in run["events"] if e["what"] == "restarted"]) == 4
    assert len(run["shutdown_seconds"]) == 8, "two instances of each of four services"
    results: dict[str, RunResult] = {r.kind: r for r in harness["results"]}
    assert not results["kill"].metrics_complete


def test_outages_happened_mid_replay(harness: dict[str, Any]) -> None:
    for kind, part in (("broker", "broker"), ("database", "database")):
        steps = [e["what"] for e in run_of(harness, kind)["events"]]
        assert steps == [f"{part} stopping", f"{part} stopped", f"{part} started"], steps
