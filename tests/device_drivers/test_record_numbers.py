"""`record_numbers.log_was_reset`: has a device's record log restarted? (pure, no radio)"""

from __future__ import annotations

import pytest

from device_drivers.drivers.record_numbers import (
    LogExtent,
    log_was_reset,
    precedes,
    sequence_modulus,
)


def test_serial_number_order() -> None:
    assert precedes(1, 2) and not precedes(2, 1) and not precedes(5, 5)
    assert precedes(65535, 0) and precedes(65530, 3)  # across the top: 3 follows 65530
    assert not precedes(3, 65530)
    assert precedes(3, 500) and precedes(0xFFFFFFFF, 0, sequence_size=4)
    assert precedes(0, 500, sequence_size=4)
    assert sequence_modulus(2) == 65536 and sequence_modulus(4) == 1 << 32
    with pytest.raises(ValueError):
        sequence_modulus(3)


@pytest.mark.parametrize(
    ("last_stored", "log", "reset"),
    [
        # nothing stored, or nothing on the device: nothing to decide
        (None, LogExtent(newest=3, oldest=1, count=3), False),
        (500, LogExtent(count=0), False),
        (500, LogExtent(), False),
        # a log that goes on from the hub's last stored record
        (500, LogExtent(newest=503, oldest=501, count=3), False),
        (500, LogExtent(newest=500, oldest=500, count=1), False),  # nothing new
        (500, LogExtent(newest=503), False),
        # old records the device still holds (a delete failed): not a reset
        (500, LogExtent(newest=503, oldest=498, count=6), False),
        # the device overwrote its oldest records (storage full): a gap, not a reset
        (100, LogExtent(newest=800, oldest=301, count=500), False),
        # rule 1: the newest record precedes the hub's: the log restarted
        (500, LogExtent(newest=3, oldest=1, count=3), True),
        (500, LogExtent(newest=3), True),
        (500, LogExtent(newest=499, oldest=1, count=499), True),
        # rule 2: more records than their numbers span (kept across a restart)
        (500, LogExtent(newest=600, oldest=498, count=603), True),
        # a counter that merely rolled over: 65531..65535, 0..3
        (65530, LogExtent(newest=3, oldest=65531, count=9), False),
        # rule 3: restarted across the top: ">= 65531" would miss 1..3
        (65530, LogExtent(newest=3, oldest=1, count=3), True),
        # the hub's last stored is the largest: the rollover rule fetches everything
        (65535, LogExtent(newest=3, oldest=1, count=3), False),
        (65535, LogExtent(newest=65535, oldest=65530, count=6), False),
    ],
)
def test_log_was_reset(last_stored: int | None, log: LogExtent, reset: bool) -> None:
    assert log_was_reset(last_stored, log) is reset


def test_deleted_window_that_holds_records_again_is_a_reset() -> None:
    # The meter confirmed deleting <= 500, yet holds 1..600 (reset, then 600 readings).
    log = LogExtent(newest=600, oldest=1, count=600)
    assert not log_was_reset(500, log)  # by the numbers alone it fits a failed delete
    assert log_was_reset(500, log, deleted_up_to=500)
    # Records after the deleted window are what it should hold.
    assert not log_was_reset(500, LogExtent(newest=600, oldest=501, count=100), deleted_up_to=500)
    # After the top-of-range window delete (32768..65535), rolled-over 0..3 are new.
    rolled = LogExtent(newest=3, oldest=0, count=4)
    assert not log_was_reset(65535, rolled, deleted_up_to=65535)


def test_dispenser_status_alone_with_32_bit_numbers() -> None:
    """The dispenser says only its newest sequence (Dispenser Status `last_sequence`)."""
    assert log_was_reset(500, LogExtent(newest=3), sequence_size=4)
    assert log_was_reset(500, LogExtent(newest=0), sequence_size=4)  # reset, no event yet
    assert not log_was_reset(500, LogExtent(newest=500), sequence_size=4)
    assert not log_was_reset(500, LogExtent(newest=70000), sequence_size=4)
    assert not log_was_reset(None, LogExtent(newest=3), sequence_size=4)
    # 65535 is not the top of a 32-bit range: 3 precedes it, a reset.
    assert log_was_reset(65535, LogExtent(newest=3), sequence_size=4)
    assert not log_was_reset(0xFFFFFFFF, LogExtent(newest=3), sequence_size=4)
