"""Generating a chain: the steps in order, and the records broken on purpose."""

from __future__ import annotations

import random
from datetime import date, timedelta

from tools.samplechain import members, sales
from tools.samplechain.catalogue import Catalogue
from tools.samplechain.complaints import complaints, draft_complaint
from tools.samplechain.drafts import ProfileChange, Refund, ReturnedLine
from tools.samplechain.model import COMPLAINT_KINDS, Chain, Customer, Store
from tools.samplechain.season import Season
from tools.samplechain.stores import build_stores
from tools.samplechain.wire import DEFECTS
from tools.samplechain.world import World, categories


def generate_chain(
    seed: int = 7,
    *,
    stores: int = 36,
    customers: int = 3000,
    start: date = date(2025, 11, 1),
    days: int = 365,
    malformed_share: float = 0.005,
) -> Chain:
    """Generate a store chain and a year of its events; the same arguments give the same bytes.

    ``malformed_share`` of the records (at least one of each defect when above 0)
    break the contract on purpose; they come on top of a consistent valid stream.
    """
    if stores < 1 or customers < 1 or days < 1:
        raise ValueError("a chain needs at least one store, one customer and one day")
    if not 0 <= malformed_share < 1:
        raise ValueError("malformed_share must be at least 0 and below 1")
    rng = random.Random(seed)
    world = World(rng, build_stores(rng, stores), Catalogue(rng), Season(start, days))
    members.register(world, customers)
    sales.shop(world)
    sales.walk_ins(world)
    sales.returns(world)
    complaints(world)
    members.referrals(world)
    members.profile_changes(world)
    members.opening_balances(world)
    _malformed(world, malformed_share)
    return Chain(
        seed=seed,
        start=start,
        days=days,
        stores=world.stores,
        customers=world.customers,
        records=world.records(),
    )


def _malformed(world: World, share: float) -> None:
    """Draft records that break the contract, each defect in turn, spread over the year."""
    if share <= 0:
        return
    rng, season = world.rng, world.season
    buyers = [c for c in world.customers if world.day_of(c.registered_at) < season.days - 1]
    if not buyers:
        return
    count = max(len(DEFECTS), round(share * world.draft_count))
    for number in range(count):
        defect = DEFECTS[number % len(DEFECTS)]
        variant = number // len(DEFECTS)
        customer = rng.choice(buyers)
        home = world.home(customer)
        day_index = season.draw_day(rng, max(0, world.day_of(customer.registered_at) + 1))
        # Defects that any event can have show on customers' and complaints' topics too.
        topic_turn = number % 3 if defect in ("missing_field", "naive_datetime", "not_json") else 0
        if defect == "unknown_order":
            _return_of_unknown_order(world, customer, home, day_index)
        elif topic_turn == 1 and defect != "not_json":
            at = world.visit(home, day_index)
            fields = members.changed_fields(world, customer, home)
            world.add(
                ProfileChange(
                    at,
                    customer,
                    home.store_id,
                    None,
                    "updated",
                    fields,
                    defect=defect,
                    variant=variant,
                )
            )
        elif topic_turn == 2:
            complaint = draft_complaint(world, customer, rng.choice(COMPLAINT_KINDS), None)
            if complaint is not None:
                complaint.defect, complaint.variant = defect, variant
                world.add(complaint)
        else:
            habit = world.habits[customer.customer_id]
            sales.add_sale(world, customer, habit, day_index, defect=defect, variant=variant)


def _return_of_unknown_order(world: World, customer: Customer, home: Store, day_index: int) -> None:
    # Contract-valid, but no till ever issued this order: loyalty must dead-letter it.
    rng = world.rng
    at = world.visit(home, day_index)
    model = rng.choice(world.catalogue.models[rng.choice(categories(home)).category])
    sold_on = at.date() - timedelta(days=rng.randint(1, 6))
    # Tills number each day's orders from 1; a 9xxxxx number is never reached.
    order_id = f"{home.store_id}-{sold_on:%Y%m%d}-9{rng.randrange(10**5):05d}"
    line = ReturnedLine(model.code, 1, model.price)
    world.add(
        Refund(
            at,
            home,
            None,
            customer,
            [line],
            "size",
            defect="unknown_order",
            unknown_order_id=order_id,
        )
    )
