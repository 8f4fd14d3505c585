"""The state of a chain being generated: its stores, customers, sales so far, and events drafted."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from itertools import accumulate

from tools.samplechain.catalogue import APPAREL, BUILDING, Catalogue, CategorySpec
from tools.samplechain.drafts import Draft, Ids, Sale
from tools.samplechain.model import Customer, Record, Store
from tools.samplechain.season import Season, local, store_time


@dataclass(slots=True)
class Habit:
    """How a customer shops: purchases a year, and a lean towards dearer models in [0, 1]."""

    rate: float
    affinity: float


class World:
    """Everything generated so far; the steps of generation read and add to it."""

    def __init__(
        self, rng: random.Random, stores: list[Store], catalogue: Catalogue, season: Season
    ) -> None:
        self.rng = rng
        self.stores = stores
        self.catalogue = catalogue
        self.season = season
        self.start = season.start
        self.end = season.start + timedelta(days=season.days)
        self.by_id = {store.store_id: store for store in stores}
        self._footfall = list(accumulate(store.footfall for store in stores))
        self.customers: list[Customer] = []
        self.habits: dict[str, Habit] = {}
        self.sales: list[Sale] = []
        """Valid sales, in the order drafted: what returns and complaints refer to."""
        self._drafts: list[tuple[int, int, Draft]] = []

    @property
    def draft_count(self) -> int:
        """How many events are drafted so far."""
        return len(self._drafts)

    def add(self, draft: Draft) -> None:
        """Draft an event; events keep their drafting order when they happen in the same second."""
        self._drafts.append((int(draft.at.timestamp()), len(self._drafts), draft))

    def records(self) -> list[Record]:
        """Put every drafted event in time order, number it, and write it."""
        ids = Ids()
        self._drafts.sort(key=lambda item: (item[0], item[1]))
        return [draft.render(ids) for _, _, draft in self._drafts]

    def home(self, customer: Customer) -> Store:
        """A customer's home store."""
        return self.by_id[customer.home_store_id]

    def any_store(self) -> Store:
        """A store drawn by footfall."""
        return self.rng.choices(self.stores, cum_weights=self._footfall)[0]

    def elsewhere(self, store: Store) -> Store:
        """Another store of the same trade: often in the same city, sometimes far away."""
        others = [s for s in self.stores if s.trade == store.trade and s is not store]
        if not others:
            return store
        same_city = [s for s in others if s.city == store.city]
        if same_city and self.rng.random() < 0.55:
            return self.rng.choice(same_city)
        return self.rng.choices(others, [s.footfall for s in others])[0]

    def day_of(self, at: datetime) -> int:
        """The day offset in the generated year of an instant's local date."""
        return (at.date() - self.start).days

    def in_year(self, day: date) -> bool:
        """Whether a local date lies in the generated year."""
        return self.start <= day < self.end

    def visit(self, store: Store, first_day: int) -> datetime:
        """A moment during store hours on a day drawn from ``first_day`` on."""
        day = self.season.dates[self.season.draw_day(self.rng, first_day)]
        return local(day, store_time(self.rng), store.zone)


def categories(store: Store) -> tuple[CategorySpec, ...]:
    """The categories a store sells."""
    return APPAREL if store.trade == "apparel" else BUILDING
