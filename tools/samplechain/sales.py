"""What customers buy and bring back: a year of sales with seasons, walk-ins, and returns."""

from __future__ import annotations

import math
import random
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from tools.samplechain.catalogue import CENT
from tools.samplechain.drafts import Refund, ReturnedLine, Sale
from tools.samplechain.model import Customer, Store
from tools.samplechain.season import local, online_share, online_time, store_time
from tools.samplechain.wire import Defect
from tools.samplechain.world import Habit, World

WALK_IN_SHARE = 0.15
HOME_STORE_SHARE = 0.86
FIRST_PURCHASE_AT_REGISTRATION = 0.75
PHONE_ORDER_SHARE = 0.03
RETURN_RATE = 0.065
WALK_IN_RETURN_RATE = 0.03
RETURN_WITHIN_7_DAYS = 0.7
RETURN_IN_OTHER_STORE = 0.12
_RETURN_REASONS_EARLY = ("size", "size", "colour", "changed_mind", "not_as_described")
_RETURN_REASONS_LATE = ("quality", "defect", "damaged")


def _poisson(rng: random.Random, mean: float) -> int:
    if mean <= 0:
        return 0
    if mean > 30:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, count, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def shop(world: World) -> None:
    """Every buying customer's purchases of the year, busy days more often."""
    rng, season = world.rng, world.season
    for customer in world.customers:
        habit = world.habits[customer.customer_id]
        if habit.rate == 0:
            continue
        first_day = max(0, world.day_of(customer.registered_at))
        registered_this_year = customer.registered_at.date() >= world.start
        if registered_this_year and rng.random() < FIRST_PURCHASE_AT_REGISTRATION:
            # Registered at the till while paying: the first purchase follows at once.
            at = customer.registered_at + timedelta(minutes=rng.randint(2, 25))
            add_sale(
                world,
                customer,
                habit,
                first_day,
                at=at,
                store=world.home(customer),
                channel="store",
            )
            first_day += 1
        if first_day >= season.days:
            continue
        for _ in range(_poisson(rng, habit.rate * season.share_from(first_day))):
            add_sale(world, customer, habit, season.draw_day(rng, first_day))


def add_sale(
    world: World,
    customer: Customer | None,
    habit: Habit,
    day_index: int,
    *,
    at: datetime | None = None,
    store: Store | None = None,
    channel: str | None = None,
    defect: Defect | None = None,
    variant: int = 0,
) -> Sale:
    """Draft one sale on a day of the year; where, how and when follow the customer's habits."""
    rng = world.rng
    day = world.season.dates[day_index]
    home = world.home(customer) if customer else None
    if store is None:
        if home is not None and rng.random() < HOME_STORE_SHARE:
            store = home
        else:
            store = world.elsewhere(home or world.any_store())
    if channel is None:
        channel = "store"
        if customer is not None and rng.random() < online_share(day):
            channel = "online"
        elif customer is not None and rng.random() < PHONE_ORDER_SHARE:
            channel = "phone"
    if channel != "store" and home is not None:
        store = home  # online and phone orders are booked to the home store
    if channel == "online":
        staff_id = None
        clock = online_time(rng, day)
    else:
        own_salesperson = customer is not None and store is home and rng.random() < 0.6
        staff_id = customer.staff_id if customer and own_salesperson else rng.choice(store.staff)
        clock = store_time(rng)
    if at is None:
        at = local(day, clock, store.zone)
    if customer is not None and at <= customer.registered_at:
        at = customer.registered_at + timedelta(minutes=rng.randint(3, 40))
    discount = Decimal(1)
    if online_share(day) > 0.1 and rng.random() < 0.6:
        discount = Decimal(rng.choice(("0.8", "0.85", "0.9")))  # festival promotions
    elif customer is not None and habit.rate > 12 and rng.random() < 0.5:
        discount = Decimal("0.95")  # a VIP's member discount
    lines = world.catalogue.basket(rng, store.trade, day.month, habit.affinity, discount)
    sale = Sale(at, store, customer, staff_id, channel, lines, defect=defect, variant=variant)
    world.add(sale)
    if defect is None:
        world.sales.append(sale)
    return sale


def walk_ins(world: World) -> None:
    """Sales to shoppers who are not members, about a seventh of all sales."""
    rng, season = world.rng, world.season
    members = len(world.sales)
    for _ in range(round(members * WALK_IN_SHARE / (1 - WALK_IN_SHARE))):
        habit = Habit(0.0, rng.betavariate(2, 4))
        add_sale(world, None, habit, season.draw_day(rng), store=world.any_store(), channel="store")


def returns(world: World) -> None:
    """Returns within the 7 days that need no reason, and later ones for defects, some elsewhere."""
    rng = world.rng
    for sale in list(world.sales):
        rate = WALK_IN_RETURN_RATE if sale.customer is None else RETURN_RATE
        if sale.store.trade == "building_materials":
            rate *= 0.6
        if rng.random() >= rate:
            continue
        within = rng.random() < RETURN_WITHIN_7_DAYS
        # A walk-in comes back to the store of the sale, so the return keeps the sale's key.
        store = sale.store
        if sale.customer is not None and rng.random() < RETURN_IN_OTHER_STORE:
            home = world.home(sale.customer)
            store = home if home is not sale.store else world.elsewhere(sale.store)
        delay = rng.randint(0, 6) if within else rng.randint(8, 75)
        day = sale.at.astimezone(store.zone).date() + timedelta(days=delay)
        if not world.in_year(day):
            continue
        at = local(day, store_time(rng), store.zone)
        if at <= sale.at + timedelta(minutes=20):
            at = (sale.at + timedelta(minutes=rng.randint(20, 120))).astimezone(store.zone)
        reason = rng.choice(_RETURN_REASONS_EARLY if within else _RETURN_REASONS_LATE)
        world.add(Refund(at, store, sale, sale.customer, _returned_lines(rng, sale), reason))


def _returned_lines(rng: random.Random, sale: Sale) -> list[ReturnedLine]:
    everything = [ReturnedLine(line.sku, line.quantity, line.amount) for line in sale.lines]
    units = sum(line.quantity for line in sale.lines)
    if units == 1 or rng.random() < 0.4:
        return everything
    if len(sale.lines) > 1 and rng.random() < 0.6:
        return rng.sample(everything, rng.randint(1, len(everything) - 1))
    line = rng.choice(sale.lines)
    if line.quantity == 1:
        return [ReturnedLine(line.sku, 1, line.amount)]
    quantity = rng.randint(1, line.quantity - 1)
    amount = (line.amount * quantity / line.quantity).quantize(CENT, ROUND_HALF_UP)
    return [ReturnedLine(line.sku, quantity, amount)]
