"""Pure loyalty rules for earning, returns, referrals and commands: no I/O, no clock."""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from decimal import ROUND_DOWN, ROUND_HALF_UP, ROUND_UP, Decimal
from zoneinfo import ZoneInfo

from services.loyalty.policy import LoyaltyPolicy
from shared.contracts import LoyaltyCommand, Purchase, Referral
from shared.contracts.values import InvalidBirthday, parse_birthday

_ROUNDING = {"down": ROUND_DOWN, "half_up": ROUND_HALF_UP, "up": ROUND_UP}


class LoyaltyRuleBroken(ValueError):
    """An event breaks a loyalty rule: it goes to the dead-letter topic, never guessed."""


@dataclass(frozen=True)
class Birthday:
    """The only birthday facts loyalty keeps: month and day, never the year."""

    month: int
    day: int

    def __post_init__(self) -> None:
        if (
            not 1 <= self.month <= 12
            or not 1 <= self.day <= calendar.monthrange(2000, self.month)[1]
        ):
            raise ValueError(f"not a birthday: month {self.month}, day {self.day}")

    def falls_on(self, local: date) -> bool:
        """True on the birthday; a 29 February birthday is kept on 28 February in common years."""
        if self.month == 2 and self.day == 29 and not calendar.isleap(local.year):
            return local.month == 2 and local.day == 28
        return (local.month, local.day) == (self.month, self.day)


def birthday_from_fields(fields: dict[str, object], at: datetime) -> Birthday | None:
    """Month and day of the ``birthday`` field (the year is dropped); None when absent.

    Read as every service reads it (``shared.contracts.values.parse_birthday``).
    """
    try:
        born = parse_birthday(fields.get("birthday"), at)
    except InvalidBirthday as error:
        raise LoyaltyRuleBroken(f"fields.birthday: {error}") from None
    return None if born is None else Birthday(born.month, born.day)


def from_minor(minor: int) -> Decimal:
    """Minor units back to money with its two decimals (75000 → 750.00)."""
    return Decimal(minor).scaleb(-2)


def rounded(points: Decimal, policy: LoyaltyPolicy) -> int:
    """Whole points by the policy's rounding."""
    return int(points.quantize(Decimal(1), rounding=_ROUNDING[policy.rounding]))


def store_zone(store_id: str, occurred_at: datetime, policy: LoyaltyPolicy) -> tzinfo:
    """The store's clock: its configured zone, else the offset its POS stamped on the event."""
    zone = policy.store_time_zones.get(store_id)
    if zone is not None:
        return ZoneInfo(zone)
    offset = occurred_at.tzinfo
    assert offset is not None  # contract timestamps are always aware
    return offset


def is_member_day(purchase: Purchase, policy: LoyaltyPolicy) -> bool:
    """True when the sale happened on the member day, by the store's own calendar."""
    local = purchase.occurred_at.astimezone(
        store_zone(purchase.store_id, purchase.occurred_at, policy)
    )
    return local.day == policy.member_day.day_of_month


def promotion_multiplier(
    purchase: Purchase, birthday: Birthday | None, policy: LoyaltyPolicy
) -> Decimal:
    """The member-day and birthday multipliers that apply: the best one, or their product."""
    local = purchase.occurred_at.astimezone(
        store_zone(purchase.store_id, purchase.occurred_at, policy)
    ).date()
    applying: list[Decimal] = []
    if local.day == policy.member_day.day_of_month:
        applying.append(policy.member_day.multiplier)
    if birthday is not None:
        if birthday.falls_on(local):
            applying.append(policy.birthday.day_multiplier)
        elif birthday.month == local.month:
            applying.append(policy.birthday.month_multiplier)
    if not applying:
        return Decimal(1)
    if policy.promotions_stack:
        product = Decimal(1)
        for multiplier in applying:
            product *= multiplier
        return product
    return max(applying)


def points_for(
    purchase: Purchase,
    policy: LoyaltyPolicy,
    *,
    tier: str | None = None,
    birthday: Birthday | None = None,
) -> int:
    """Points a member earns for a purchase.

    Each line's amount (in the reporting currency) times the base rate and its category
    multiplier; the sum
    times the tier multiplier (of the tier held before this purchase) and the
    promotion multiplier; rounded once, at the end.
    """
    base = sum(
        (
            policy.rates.to_units(line.amount, purchase.currency)
            * policy.points_per_currency_unit
            * policy.category_multipliers.get(line.category, Decimal(1))
            for line in purchase.lines
        ),
        Decimal(0),
    )
    tier_multiplier = policy.tier_named(tier).multiplier if tier else Decimal(1)
    return max(
        rounded(base * tier_multiplier * promotion_multiplier(purchase, birthday, policy), policy),
        0,
    )


def points_to_reverse(
    *, earned: int, total_minor: int, refunded_before_minor: int, refund_minor: int
) -> int:
    """Points a return takes back: the refunded share of what the order earned.

    Computed on the cumulative refund, so several partial returns never take
    back more (or less) than a single return of the same amount would.
    """
    if refund_minor <= 0:
        raise LoyaltyRuleBroken("a return must refund more than 0")
    if total_minor <= 0:
        return 0
    if refunded_before_minor + refund_minor > total_minor:
        raise LoyaltyRuleBroken(
            f"returns would refund {refunded_before_minor + refund_minor} minor units "
            f"of an order of {total_minor}"
        )
    after = (earned * (refunded_before_minor + refund_minor)) // total_minor
    before = (earned * refunded_before_minor) // total_minor
    return after - before


def check_referral(referral: Referral, *, referee_has_bought: bool) -> None:
    """A referral counts only for a new customer brought by someone else."""
    if referral.referrer_id == referral.referee_id:
        raise LoyaltyRuleBroken("a customer cannot refer themself")
    if referee_has_bought:
        raise LoyaltyRuleBroken(f"referee {referral.referee_id} is not new: already bought")


def command_points(command: LoyaltyCommand) -> int:
    """Signed points of a command: awards and opening balances add, deductions take away."""
    return -command.points if command.action == "deduct" else command.points


# Ledger entry ids: one per cause, ever.
def earned_entry_id(event_id: str) -> str:
    """The ledger id of the points a purchase earned: one per purchase event, ever."""
    return f"{event_id}:earned"


def reversed_entry_id(return_event_id: str) -> str:
    """The ledger id of the points a return took back."""
    return f"{return_event_id}:reversed"


def referral_entry_id(referee_id: str, side: str) -> str:
    """The ledger id of a referral reward: once per referee and side, whatever the events."""
    return f"referral:{referee_id}:{side}"


def command_entry_id(command_id: str) -> str:
    """The ledger id of a command: idempotent by the command's own id."""
    return f"command:{command_id}"


def redemption_entry_id(customer_id: str, idempotency_key: str) -> str:
    """The ledger id of a redemption: one per member and idempotency key."""
    return f"redemption:{customer_id}:{idempotency_key}"


def expired_entry_id(lot_entry_id: str) -> str:
    """The ledger id of the expiry of one lot of earned points."""
    return f"{lot_entry_id}:expired"
