"""Customers joining and changing: registrations, referrals, updates, consent, opening balances."""

from __future__ import annotations

import bisect
from datetime import datetime, time, timedelta
from itertools import accumulate
from typing import Literal

from tools.samplechain import people
from tools.samplechain.drafts import OpeningBalance, ProfileChange, ReferralMade
from tools.samplechain.model import Customer, Language, Store
from tools.samplechain.season import local, online_time, store_time
from tools.samplechain.world import Habit, World

PRE_EXISTING_SHARE = 0.6
"""Customers registered before the generated year: the existing member base."""
ONLINE_REGISTRATION_SHARE = 0.15
POTENTIAL_SHARE = 0.1
"""Registered customers who never buy: the documents' potential customers."""
DUPLICATE_SHARE = 0.004
"""Customers who register again with the same phone: duplicates for profile to clean."""
LEAP_DAY_MINIMUM = 3
REFERRAL_RATE = 0.12
UPDATE_RATE = 0.15
CONSENT_CHANGE_RATE = 0.1
OPENING_BALANCE_SHARE = 0.03


def register(world: World, count: int) -> None:
    """Register ``count`` customers, numbered in the order they registered."""
    rng, season = world.rng, world.season
    plans: list[tuple[int, int, Store, datetime, bool]] = []
    for number in range(count):
        home = world.any_store()
        online = rng.random() < ONLINE_REGISTRATION_SHARE
        if rng.random() < PRE_EXISTING_SHARE:
            day = world.start - timedelta(days=rng.randint(1, 730))
        else:
            day = season.dates[season.draw_day(rng)]
        at = local(day, online_time(rng, day) if online else store_time(rng), home.zone)
        plans.append((int(at.timestamp()), number, home, at, online))
    plans.sort(key=lambda plan: (plan[0], plan[1]))
    # Birthday rules must cope with 29 February: make sure a few customers have one.
    leap_count = min(count, max(LEAP_DAY_MINIMUM, count // 400))
    born_on_leap_day = set(rng.sample(range(1, count + 1), leap_count))
    phones: dict[str, str] = {}
    for number, (_, _, home, at, online) in enumerate(plans, start=1):
        customer, fields, note = _new_customer(
            world, f"C{number:07d}", home, at, phones, leap_day=number in born_on_leap_day
        )
        world.customers.append(customer)
        world.habits[customer.customer_id] = _habit(world, home)
        staff_id = None if online else customer.staff_id
        world.add(
            ProfileChange(
                at,
                customer,
                home.store_id,
                staff_id,
                "registered",
                fields,
                dict(customer.consent),
                note=note,
            )
        )


def _new_customer(
    world: World,
    customer_id: str,
    home: Store,
    at: datetime,
    phones: dict[str, str],
    *,
    leap_day: bool,
) -> tuple[Customer, dict[str, object], str]:
    rng = world.rng
    english = people.ENGLISH_SHARE.get(home.region, people.DEFAULT_ENGLISH_SHARE)
    language: Language = "en" if rng.random() < english else "zh"
    gender: Literal["F", "M"] | None = rng.choices(("F", "M", None), (65, 30, 5))[0]
    name = (
        people.english_name(rng, gender) if language == "en" else people.chinese_name(rng, gender)
    )
    note = ""
    if phones and rng.random() < DUPLICATE_SHARE:
        digits, first_owner = rng.choice(list(phones.items()))
        note = f"same phone as {first_owner}"
    else:
        digits = people.mobile_number(rng)
        while digits in phones:
            digits = people.mobile_number(rng)
        phones[digits] = customer_id
    phone = people.messy_phone(rng, digits)
    # Birthday and address are asked for only if the customer does not mind.
    birthday = people.birthday(rng, world.start) if rng.random() < 0.7 else None
    if leap_day:
        birthday = people.leap_day_birthday(rng, world.start)
    email = (
        people.email(rng, language) if rng.random() < (0.6 if language == "en" else 0.12) else None
    )
    size = people.clothing_size(rng) if home.trade == "apparel" and rng.random() < 0.6 else None
    fields: dict[str, object] = {"name": name, "phone": phone}
    if gender:
        fields["gender"] = gender
    if birthday:
        fields["birthday"] = birthday.isoformat()
    if size:
        fields["clothing_size"] = size
    if email:
        fields["email"] = email
    if home.region not in ("overseas", "hong_kong") and rng.random() < 0.05:
        fields["address"] = people.address(rng, home.city_zh)
    customer = Customer(
        customer_id=customer_id,
        name=name,
        phone=phone,
        gender=gender,
        birthday=birthday,
        home_store_id=home.store_id,
        staff_id=rng.choice(home.staff),
        consent=people.initial_consent(rng, email is not None),
        registered_at=at,
        language=language,
        email=email,
        clothing_size=size,
    )
    return customer, fields, note


def _habit(world: World, home: Store) -> Habit:
    rng = world.rng
    if rng.random() < POTENTIAL_SHARE:
        return Habit(0.0, 0.3)
    if home.trade == "building_materials":
        rate = min(6.0, 0.8 * rng.paretovariate(2.5))
    else:
        # Heavy tail: most come back a few times a year, a few dozen almost weekly (VIPs).
        rate = min(60.0, 1.4 * rng.paretovariate(1.5))
    affinity = min(0.98, rng.betavariate(2, 3.5) + min(rate, 30) / 60)
    return Habit(rate, affinity)


def referrals(world: World) -> None:
    """Some customers of this year were brought by an earlier one; keen buyers bring more."""
    rng = world.rng
    weights = list(accumulate(world.habits[c.customer_id].rate + 0.3 for c in world.customers))
    for index, referee in enumerate(world.customers):
        if (
            index == 0
            or referee.registered_at.date() < world.start
            or rng.random() >= REFERRAL_RATE
        ):
            continue
        point = rng.random() * weights[index - 1]
        referrer = world.customers[min(bisect.bisect_right(weights, point, 0, index), index - 1)]
        at = referee.registered_at + timedelta(minutes=rng.randint(1, 40))
        world.add(ReferralMade(at, referrer, referee, referee.home_store_id))


def profile_changes(world: World) -> None:
    """Updates of personal data and changes of consent after registration."""
    rng = world.rng
    for customer in world.customers:
        home = world.home(customer)
        first = max(0, world.day_of(customer.registered_at) + 1)
        if first >= world.season.days:
            continue
        if rng.random() < UPDATE_RATE:
            for _ in range(rng.choices((1, 2), (3, 1))[0]):
                at = world.visit(home, first)
                fields = changed_fields(world, customer, home)
                world.add(
                    ProfileChange(
                        at, customer, home.store_id, rng.choice(home.staff), "updated", fields
                    )
                )
        if rng.random() < CONSENT_CHANGE_RATE:
            consent = dict(customer.consent)
            count = rng.choices((1, 2), (4, 1))[0]
            for at in sorted(world.visit(home, first) for _ in range(count)):
                for channel in rng.sample(sorted(consent), rng.randint(1, 2)):
                    consent[channel] = not consent[channel]
                # The whole consent, not only what changed: a reader needs no earlier state.
                world.add(
                    ProfileChange(
                        at, customer, home.store_id, None, "consent_changed", consent=dict(consent)
                    )
                )


def changed_fields(world: World, customer: Customer, home: Store) -> dict[str, object]:
    """One or two pieces of personal data a customer changes: a new phone, an e-mail, a size…"""
    rng = world.rng
    options = ["phone", "email", "clothing_size", "address", "birthday"]
    if home.trade != "apparel":
        options.remove("clothing_size")
    if home.region in ("overseas", "hong_kong"):
        options.remove("address")
    if customer.birthday is not None:
        options.remove("birthday")
    fields: dict[str, object] = {}
    for name in rng.sample(options, rng.randint(1, 2)):
        if name == "phone":
            fields["phone"] = people.messy_phone(rng, people.mobile_number(rng))
        elif name == "email":
            fields["email"] = people.email(rng, customer.language)
        elif name == "clothing_size":
            fields["clothing_size"] = people.clothing_size(rng)
        elif name == "address":
            fields["address"] = people.address(rng, home.city_zh)
        else:
            fields["birthday"] = people.birthday(rng, world.start).isoformat()
    return fields


def opening_balances(world: World) -> None:
    """Points a few existing members bring from the previous membership system, on day one."""
    rng = world.rng
    members = [c for c in world.customers if c.registered_at.date() < world.start]
    if not members:
        return
    count = min(len(members), max(3, round(len(members) * OPENING_BALANCE_SHARE)))
    chosen = sorted(rng.sample(members, count), key=lambda c: c.customer_id)
    for offset, customer in enumerate(chosen):
        at = local(world.start, time(9, 0), world.home(customer).zone) + timedelta(seconds=offset)
        points = min(50_000, int(rng.paretovariate(1.2) * 200))
        world.add(OpeningBalance(at, customer, points))
