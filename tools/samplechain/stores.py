"""Where the chain's stores are: mostly Chinese cities, a few stores in other time zones."""

from __future__ import annotations

import random
from dataclasses import dataclass

from tools.samplechain.model import Store, Trade


@dataclass(frozen=True, slots=True)
class City:
    """A city the chain may open stores in."""

    code: str
    name: str
    name_zh: str
    region: str
    time_zone: str
    weight: float


MAINLAND = (
    City("SH", "Shanghai", "上海", "east", "Asia/Shanghai", 6),
    City("BJ", "Beijing", "北京", "north", "Asia/Shanghai", 5),
    City("GZ", "Guangzhou", "广州", "south", "Asia/Shanghai", 4),
    City("SZ", "Shenzhen", "深圳", "south", "Asia/Shanghai", 4),
    City("HZ", "Hangzhou", "杭州", "east", "Asia/Shanghai", 3),
    City("CD", "Chengdu", "成都", "southwest", "Asia/Shanghai", 3),
    City("NJ", "Nanjing", "南京", "east", "Asia/Shanghai", 2),
    City("SU", "Suzhou", "苏州", "east", "Asia/Shanghai", 2),
    City("WH", "Wuhan", "武汉", "central", "Asia/Shanghai", 2),
    City("CQ", "Chongqing", "重庆", "southwest", "Asia/Shanghai", 2),
    City("XA", "Xi'an", "西安", "northwest", "Asia/Shanghai", 2),
    City("TJ", "Tianjin", "天津", "north", "Asia/Shanghai", 2),
    City("CS", "Changsha", "长沙", "central", "Asia/Shanghai", 1),
    City("QD", "Qingdao", "青岛", "north", "Asia/Shanghai", 1),
    City("XM", "Xiamen", "厦门", "south", "Asia/Shanghai", 1),
    City("SY", "Shenyang", "沈阳", "northeast", "Asia/Shanghai", 1),
    City("KM", "Kunming", "昆明", "southwest", "Asia/Shanghai", 1),
)
# One store each, in the order they are added as the chain grows.
OTHER_ZONES = (
    City("UR", "Urumqi", "乌鲁木齐", "northwest", "Asia/Urumqi", 1),
    City("HK", "Hong Kong", "香港", "hong_kong", "Asia/Hong_Kong", 1),
    City("SG", "Singapore", "新加坡", "overseas", "Asia/Singapore", 1),
    City("LD", "London", "伦敦", "overseas", "Europe/London", 1),
)
CITIES: dict[str, City] = {city.code: city for city in (*MAINLAND, *OTHER_ZONES)}


def _other_zone_count(stores: int) -> int:
    if stores >= 12:
        return 4
    if stores >= 6:
        return 2
    return 0


def _building_materials_count(stores: int) -> int:
    if stores >= 10:
        return 2
    return 1 if stores >= 4 else 0


def _mainland_allocation(count: int) -> list[tuple[City, int]]:
    # Largest remainder: big cities get their share, the rest go to the biggest remainders.
    total = sum(city.weight for city in MAINLAND)
    quotas = [(city, count * city.weight / total) for city in MAINLAND]
    allocation = {city.code: int(quota) for city, quota in quotas}
    by_remainder = sorted(quotas, key=lambda item: item[1] - int(item[1]), reverse=True)
    for city, _ in by_remainder[: count - sum(allocation.values())]:
        allocation[city.code] += 1
    return [(city, allocation[city.code]) for city in MAINLAND if allocation[city.code]]


def build_stores(rng: random.Random, count: int) -> list[Store]:
    """Lay out ``count`` stores: mainland cities by size first, then other time zones."""
    if count < 1:
        raise ValueError("a chain needs at least one store")
    other = _other_zone_count(count)
    plan = [*_mainland_allocation(count - other), *((city, 1) for city in OTHER_ZONES[:other])]
    layout: list[tuple[City, str, float]] = []
    for city, stores_in_city in plan:
        for number in range(1, stores_in_city + 1):
            flagship = number == 1 and city.weight >= 4
            footfall = round(rng.uniform(0.6, 1.5) * (2.0 if flagship else 1.0), 3)
            layout.append((city, f"{city.code}{number:03d}", footfall))
    # Building materials go to a mainland store that is not a city's first.
    candidates = [sid for city, sid, _ in layout if city in MAINLAND and not sid.endswith("001")]
    candidates = candidates or [sid for city, sid, _ in layout if city in MAINLAND]
    building = set(rng.sample(candidates, min(_building_materials_count(count), len(candidates))))
    stores = []
    for city, store_id, footfall in layout:
        trade: Trade = "building_materials" if store_id in building else "apparel"
        headcount = rng.randint(4, 8) if trade == "building_materials" else rng.randint(6, 14)
        stores.append(
            Store(
                store_id=store_id,
                city=city.name,
                city_zh=city.name_zh,
                region=city.region,
                time_zone=city.time_zone,
                trade=trade,
                staff=tuple(f"{store_id}-S{n:02d}" for n in range(1, headcount + 1)),
                footfall=footfall * (0.5 if trade == "building_materials" else 1.0),
            )
        )
    return stores
