"""When loyalty's scheduled work is due, as time-bucket keys a job reads by equality.

* Scheduled tier evaluations are filed under hour buckets of the moment a
  member's figures fall short of their tier, or their grace period ends.
* Expiries are filed under the chain's calendar day on which a lot expires:
  points expire at the start of a chain day, so a day bucket starts exactly when
  everything in it is due (``ChainDays``).
* Changes in flight (``pending_changes``) are filed under minute buckets of the
  moment they would count as left behind; claims are pruned by hour buckets.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from shared.schedule import DueBuckets
from shared.storage import Document

HOURS = DueBuckets(timedelta(hours=1))
MINUTES = DueBuckets(timedelta(minutes=1))
_KEY = "%Y-%m-%dT%H:%M"


@dataclass(frozen=True)
class ChainDays(DueBuckets):
    """Day buckets that start at midnight in the chain's time zone (keys are their UTC start)."""

    width: timedelta = timedelta(days=1)
    zone: str = "Asia/Shanghai"

    def _midnight(self, day: date) -> datetime:
        return datetime.combine(day, time(0), tzinfo=ZoneInfo(self.zone)).astimezone(UTC)

    def start_of(self, at: datetime) -> datetime:
        """The chain midnight that starts the day holding ``at``."""
        return self._midnight(at.astimezone(ZoneInfo(self.zone)).date())

    def keys_after(self, settled: str | None, until: datetime, *, first: datetime) -> list[str]:
        """Keys of the chain days after ``settled`` (else from ``first``'s) up to ``until``'s."""
        zone = ZoneInfo(self.zone)
        if settled is None:
            day = first.astimezone(zone).date()
        else:
            start = datetime.strptime(settled, _KEY).replace(tzinfo=UTC)
            day = start.astimezone(zone).date() + timedelta(days=1)
        last = until.astimezone(zone).date()
        keys = []
        while day <= last:
            keys.append(self._midnight(day).strftime(_KEY))
            day += timedelta(days=1)
        return keys


def due_document(key: str, customer_id: str, version: int, what: str) -> Document:
    """A member filed under a bucket by the change that moves its account to ``version``.

    A job that reads it before that change is written finishes the change first:
    an item is never judged on an account older than the change that filed it.
    ``what`` tells items of one change apart (a lot's id, or "tier").
    """
    return {
        "_id": f"{key}|{customer_id}|{what}",
        "bucket": key,
        "customer_id": customer_id,
        "version": version,
    }
