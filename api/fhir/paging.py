"""One page of Observations from readings in commit order (no I/O)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from api.fhir.map_observation import observations

#: The part index that says "the whole reading was returned".
WHOLE_READING = 99


@dataclass
class ObservationPage:
    #: (reading row, Observation) in order.
    entries: list[tuple[Mapping[str, Any], dict[str, Any]]] = field(default_factory=list)
    #: Where the next page starts: [xid, key, last part index returned] (None: nothing read).
    last: list[Any] | None = None
    more: bool = False


def observation_page(
    rows: Sequence[Mapping[str, Any]],
    *,
    count: int,
    after: Sequence[Any],
    only_codes: set[str] | None,
) -> ObservationPage:
    """At most `count` Observations of `rows` (fetched with LIMIT count + 1, from the
    position `after` on): a reading's Parts may be split across pages, at a Part."""
    after_xid, after_key, after_part = after
    page = ObservationPage()
    for row in rows:
        done = (
            after_part if (row["xid"] == after_xid and row["idempotency_key"] == after_key) else -1
        )
        for mapped in observations(row, only_codes=only_codes):
            if mapped.part_index <= done:
                continue
            if len(page.entries) == count:
                page.more = True
                return page
            page.entries.append((row, mapped.resource))
            page.last = [row["xid"], row["idempotency_key"], mapped.part_index]
        page.last = [row["xid"], row["idempotency_key"], WHOLE_READING]
    # Every row read: more may follow when the fetch was full.
    page.more = len(rows) > count
    return page
