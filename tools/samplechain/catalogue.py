"""What the stores sell: a fixed catalogue of models with sizes, materials and CNY prices."""

from __future__ import annotations

import random
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from tools.samplechain.model import Trade

CENT = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class CategorySpec:
    """How a category's models are coded, sized and priced."""

    category: str
    code: str
    low: int
    high: int
    sizes: tuple[str, ...]
    leather_share: float
    """Share of models made of leather; the others are textile (None: no material)."""
    max_quantity: int
    weight: float
    winter: float = 1.0
    """Demand factor from November to February (summer gets its inverse)."""


CLOTHES = ("XS", "S", "M", "L", "XL", "XXL")
APPAREL = (
    CategorySpec("outerwear", "JK", 399, 2999, CLOTHES, 0.2, 1, 12, winter=2.0),
    CategorySpec("tops", "TS", 79, 399, CLOTHES, 0.0, 3, 24),
    CategorySpec("trousers", "TR", 149, 699, tuple(str(w) for w in range(26, 35)), 0.05, 2, 15),
    CategorySpec("dresses", "DR", 199, 1299, CLOTHES[:5], 0.0, 1, 12, winter=0.5),
    CategorySpec("knitwear", "KN", 199, 1299, CLOTHES, 0.0, 2, 10, winter=1.8),
    CategorySpec("shoes", "FW", 299, 1599, tuple(str(s) for s in range(35, 45)), 0.7, 1, 10),
    CategorySpec("accessories", "AC", 39, 399, (), 0.25, 3, 12),
    CategorySpec("leather_goods", "LG", 499, 3999, (), 1.0, 1, 5),
)
BUILDING = (
    CategorySpec("tiles", "TL", 59, 399, (), -1, 60, 25),
    CategorySpec("flooring", "FL", 129, 599, (), -1, 80, 20),
    CategorySpec("sanitary_ware", "SW", 899, 6999, (), -1, 2, 15),
    CategorySpec("paint", "PT", 199, 899, (), -1, 6, 15),
    CategorySpec("lighting", "LT", 99, 1999, (), -1, 8, 15),
    CategorySpec("cabinets", "CB", 3999, 19999, (), -1, 1, 10),
)
# What complaint texts call a category's items.
ITEM_WORDS: dict[str, tuple[str, str]] = {
    "outerwear": ("外套", "jacket"),
    "tops": ("上衣", "top"),
    "trousers": ("裤子", "trousers"),
    "dresses": ("连衣裙", "dress"),
    "knitwear": ("毛衣", "jumper"),
    "shoes": ("鞋子", "shoes"),
    "accessories": ("围巾", "scarf"),
    "leather_goods": ("皮包", "leather bag"),
    "tiles": ("瓷砖", "tiles"),
    "flooring": ("地板", "flooring"),
    "sanitary_ware": ("马桶", "toilet"),
    "paint": ("油漆", "paint"),
    "lighting": ("灯具", "lamp"),
    "cabinets": ("橱柜", "kitchen cabinet"),
}


@dataclass(frozen=True, slots=True)
class Model:
    """One product model; a SKU is the model code plus a size."""

    code: str
    spec: CategorySpec
    material: str | None
    price: Decimal


@dataclass(frozen=True, slots=True)
class Line:
    """One line of a sale."""

    sku: str
    category: str
    quantity: int
    unit_price: Decimal
    amount: Decimal
    material: str | None


def _shop_price(rng: random.Random, low: int, high: int) -> Decimal:
    # Price points cluster low, end in 9 and have no cents, as price tags do.
    raw = low + (high - low) * rng.betavariate(1.6, 3.2)
    return Decimal(max(low, int(round(raw, -1)) - 1))


class Catalogue:
    """The models on sale, by trade and category, cheapest first."""

    def __init__(self, rng: random.Random, models_per_category: int = 40) -> None:
        self.models: dict[str, list[Model]] = {}
        for spec in (*APPAREL, *BUILDING):
            models = []
            for number in rng.sample(range(1000, 9999), models_per_category):
                if spec.leather_share < 0:
                    material = None
                else:
                    material = "leather" if rng.random() < spec.leather_share else "textile"
                price = _shop_price(rng, spec.low, spec.high)
                if material == "leather" and spec.category in ("outerwear", "shoes"):
                    price = min(price * 2 - 1, Decimal(spec.high))
                models.append(Model(f"{spec.code}-{number}", spec, material, price))
            self.models[spec.category] = sorted(models, key=lambda m: (m.price, m.code))

    def basket(
        self, rng: random.Random, trade: Trade, month: int, affinity: float, discount: Decimal
    ) -> list[Line]:
        """The lines of one sale; ``affinity`` in [0, 1] leans towards dearer models."""
        specs = APPAREL if trade == "apparel" else BUILDING
        weights = [spec.weight * _seasonal(spec, month) for spec in specs]
        count = rng.choices((1, 2, 3, 4), (55, 28, 12, 5))[0]
        lines: list[Line] = []
        for spec in rng.choices(specs, weights, k=count):
            models = self.models[spec.category]
            index = int(rng.triangular(0, len(models) - 1e-9, affinity * (len(models) - 1)))
            model = models[index]
            sku = f"{model.code}-{rng.choice(spec.sizes)}" if spec.sizes else model.code
            if any(line.sku == sku for line in lines):
                continue  # the till adds to the line's quantity instead; keep it simple
            if spec.max_quantity > 3:
                quantity = rng.randint(max(1, spec.max_quantity // 6), spec.max_quantity)
            else:
                quantity = rng.choices(
                    range(1, spec.max_quantity + 1), (8, 2, 1)[: spec.max_quantity]
                )[0]
            amount = (model.price * quantity * discount).quantize(CENT, ROUND_HALF_UP)
            lines.append(Line(sku, spec.category, quantity, model.price, amount, model.material))
        return lines


def _seasonal(spec: CategorySpec, month: int) -> float:
    if month in (11, 12, 1, 2):
        return spec.winter
    if month in (5, 6, 7, 8):
        return 1 / spec.winter
    return 1.0


def money(amount: Decimal) -> str:
    """A decimal string with two places, as the contract carries money."""
    return format(amount.quantize(CENT, ROUND_HALF_UP), "f")
