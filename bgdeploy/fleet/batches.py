"""The order of a fleet rollout: the first batch, then the rest batch by batch. Pure: no I/O."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def count(value: int | str, total: int) -> int:
    """A batch size as written in the spec (3, or "25%" of `total`, rounded up), between 1 and total."""
    if total <= 0:
        return 0
    if isinstance(value, str):
        percent = int(value.rstrip("%"))
        wanted = math.ceil(total * percent / 100)
    else:
        wanted = value
    return max(1, min(total, wanted))


def plan_batches(items: Sequence[T], first_batch: int | str, batch: int | str, fleet_size: int) -> list[list[T]]:
    """Split `items` (the hosts that need a change, in spec order) into batches.

    Percentages are of the whole fleet (`fleet_size`), so a batch of "25%" keeps its size however many hosts
    already run the release.
    """
    if not items:
        return []
    first = count(first_batch, fleet_size)
    rest = count(batch, fleet_size)
    out = [list(items[:first])]
    out += [list(items[i : i + rest]) for i in range(first, len(items), rest)]
    return out


def too_many_failures(failed: int, max_failed_hosts: int) -> bool:
    return failed > max_failed_hosts
