"""Has a device's record log restarted? A pure function over record numbers (no I/O).

Glucose meters and medication dispensers number their records; the hub fetches "from
the last one I stored + 1". A device whose log restarted (battery change, factory reset,
reconditioning for another resident) numbers its new records from 1 again, so that fetch
would silently skip every new record numbered up to the hub's last stored one. Before a
fetch a driver therefore asks `log_was_reset` with what the device says about its log,
and when it answers True fetches the whole log (its records are new, not the old ones).

What the device may tell (each optional, None = unknown):

- `newest`: the sequence number of its most recent record (the dispenser's Status
  `last_sequence`; a meter's RACP "report last record"); 0 on a dispenser = no event yet;
- `oldest`: the sequence number of its oldest stored record (RACP "report first record");
- `count`: how many records it holds (RACP "report number of stored records").

The rules, in serial-number arithmetic (RFC 1982) over the sequence range, so that a
counter that rolled over from 65535 to 0 (or 2**32 - 1 on the dispenser) is a rollover,
not a reset:

1. the newest record precedes the hub's last stored one: the log restarted;
2. the log holds more records than its numbers span from oldest to newest (records
   kept across a restart of the numbering: 498, 499, 500, then 1, 2, 3);
3. the oldest record follows the last stored one but a fetch "from last stored + 1"
   (a plain >= filter on the device) would not return it, because its number is below:
   a log restarted across the top of the range (the hub had 65530, the meter now holds
   1..3; a counter that merely rolled over would still hold 65531..65535);
4. `deleted_up_to` (the hub knows the device confirmed deleting the records up to it):
   a record numbered within the deleted window is on the device again, so it is new.

When the hub's last stored number is the largest there is, the rollover rule of
`drivers/racp.py` already fetches everything (`RecordSession.wrapped`): rules 1 and 3
do not apply then. With nothing stored, or an empty log, there is nothing to decide.
Records that arrive twice because of a false alarm carry the same bytes (and so the
same idempotency key) and are stored once; a missed reset loses records: the rules
prefer the first.
"""

from __future__ import annotations

from dataclasses import dataclass


def sequence_modulus(sequence_size: int) -> int:
    """How many sequence numbers there are (65536 for the SIG's u16, 2**32 for ours)."""
    if sequence_size not in (1, 2, 4):
        raise ValueError(f"sequence_size must be 1, 2 or 4 bytes, not {sequence_size}")
    return 1 << (8 * sequence_size)


def precedes(a: int, b: int, sequence_size: int = 2) -> bool:
    """Whether `a` comes strictly before `b` in serial-number order (RFC 1982)."""
    modulus = sequence_modulus(sequence_size)
    distance = (b - a) % modulus
    return 0 < distance < modulus // 2


@dataclass(frozen=True)
class LogExtent:
    """What a device says about its record log (None: it did not say)."""

    newest: int | None = None
    oldest: int | None = None
    count: int | None = None

    @property
    def empty(self) -> bool:
        return self.count == 0 or (self.count is None and self.newest is None)


def log_was_reset(
    last_stored: int | None,
    log: LogExtent,
    *,
    sequence_size: int = 2,
    deleted_up_to: int | None = None,
) -> bool:
    """True when the device's log restarted since the hub stored `last_stored`, so its
    records must be fetched from the start (see the module for the rules)."""
    if last_stored is None or log.empty:
        return False
    modulus = sequence_modulus(sequence_size)
    top = modulus - 1
    newest, oldest, count = log.newest, log.oldest, log.count
    wrapped = last_stored >= top
    # 1. the newest record precedes the last stored one.
    if not wrapped and newest is not None and precedes(newest, last_stored, sequence_size):
        return True
    # 2. more records than their numbers span.
    if oldest is not None and newest is not None and count is not None:
        span = (newest - oldest) % modulus + 1
        if count > span:
            return True
    # 3. the oldest follows the last stored one, but ">= last stored + 1" misses it.
    if (
        not wrapped
        and oldest is not None
        and precedes(last_stored, oldest, sequence_size)
        and oldest < last_stored + 1
    ):
        return True
    # 4. a record within the window the device confirmed deleting is back.
    if deleted_up_to is not None and oldest is not None:
        behind = (deleted_up_to - oldest) % modulus
        if behind < modulus // 2:
            return True
    return False


__all__ = ["LogExtent", "log_was_reset", "precedes", "sequence_modulus"]
