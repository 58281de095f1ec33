"""DynamoDB capacity as AWS bills it, modelled from item images.

moto's ReturnConsumedCapacity leaves out index writes, so each write is priced from the item
before and after it: table write units from the larger image, and per global secondary index
of template.yaml 1 unit when the item enters or leaves the index, 2 when it stays with a
changed key (delete + put), 0 when it stays with the same key (KEYS_ONLY: no other attribute
is projected). Index entries of a KEYS_ONLY index are far below 1 KB, so 1 unit each.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

KB = 1024


def value_size(value: dict[str, Any]) -> int:
    """Bytes of one attribute value, per the DynamoDB developer guide's item-size rules."""
    (kind, v), *_ = value.items()
    if kind == "S":
        return len(v.encode())
    if kind == "N":
        digits = Decimal(v).normalize().as_tuple().digits
        return math.ceil(len(digits) / 2) + 1
    if kind == "B":
        return len(v)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind in ("SS", "NS", "BS"):
        return sum(value_size({kind[0]: x}) for x in v)
    if kind == "L":
        return 3 + sum(value_size(x) + 1 for x in v)
    if kind == "M":
        return 3 + sum(len(k.encode()) + value_size(x) + 1 for k, x in v.items())
    return 0


def item_size(item: dict[str, Any] | None) -> int:
    if not item:
        return 0
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


@dataclass(frozen=True)
class Index:
    name: str
    keys: tuple[str, ...]  # hash key, then range key if any

    def key_of(self, item: dict[str, Any] | None) -> tuple[Any, ...] | None:
        """The item's key in this (sparse) index, or None when the item is not in it."""
        if not item or any(k not in item for k in self.keys):
            return None
        return tuple(str(item[k]) for k in self.keys)

    def write_units(self, before: dict[str, Any] | None, after: dict[str, Any] | None) -> int:
        old, new = self.key_of(before), self.key_of(after)
        if old is None and new is None:
            return 0
        if old is None or new is None:
            return 1  # enters or leaves the index
        return 0 if old == new else 2


def indexes_of(table: dict[str, Any]) -> list[Index]:
    """The GSIs of a template.yaml table resource's Properties."""
    found = []
    for gsi in table.get("GlobalSecondaryIndexes", []):
        schema = sorted(gsi["KeySchema"], key=lambda k: k["KeyType"] != "HASH")
        projection = gsi.get("Projection", {}).get("ProjectionType", "KEYS_ONLY")
        if projection != "KEYS_ONLY":
            raise NotImplementedError(f"{gsi['IndexName']}: only KEYS_ONLY is modelled")
        found.append(Index(gsi["IndexName"], tuple(k["AttributeName"] for k in schema)))
    return found


def table_write_units(before: dict[str, Any] | None, after: dict[str, Any] | None) -> int:
    """1 unit per started KB of the larger of the two images (at least 1)."""
    return max(1, math.ceil(max(item_size(before), item_size(after)) / KB))


def read_units(item: dict[str, Any] | None, consistent: bool) -> float:
    units = max(1, math.ceil(item_size(item) / (4 * KB)))
    return float(units) if consistent else units / 2
