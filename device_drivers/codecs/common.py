"""Building blocks shared by the characteristic codecs: frozen models, measured values, bits.

(The bounds-checked byte reader lives in `ieee11073.ByteReader`; the number formats next to
it.) Everything here is pure and has no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict

from device_drivers.codecs.ieee11073 import ByteReader, Measured, SpecialValue


class Frozen(BaseModel):
    """Base of every codec model: immutable, unknown fields rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def finite_or_special(value: Measured) -> Measured:
    """A float NaN/inf smuggled into a model becomes the matching special value.

    So that `quantities()` can never emit it as a number.
    """
    if isinstance(value, SpecialValue):
        return value
    if value != value:
        return SpecialValue.NAN
    if value in (float("inf"), float("-inf")):
        return SpecialValue.POSITIVE_INFINITY if value > 0 else SpecialValue.NEGATIVE_INFINITY
    return value


MeasuredField = Annotated[SpecialValue | float, AfterValidator(finite_or_special)]


def number_or_none(value: Measured | None) -> float | None:
    """The number of a measured value; None for a special value (missing, never a number)."""
    if value is None or isinstance(value, SpecialValue):
        return None
    return value


@dataclass(frozen=True)
class PhysicalRange:
    """The values a measured field can physically take, e.g. SpO2 0..100 %.

    A decoder checks every number it decodes against its field's range (special values
    are not numbers and pass): a device that sends SpO2 150 % or a glucose of -10000
    mg/dL has sent garbage, which is a `DecodeError`, never a value for a nurse.
    `low_open` excludes the lower bound (a concentration or a weight is > 0).
    """

    low: float
    high: float
    unit: str
    low_open: bool = False

    def __contains__(self, value: float) -> bool:
        above_low = value > self.low if self.low_open else value >= self.low
        return above_low and value <= self.high

    def __str__(self) -> str:
        if self.high == float("inf"):
            return f"{'above' if self.low_open else 'at least'} {self.low:g} {self.unit}".strip()
        if self.low_open:
            return f"above {self.low:g} up to {self.high:g} {self.unit}".strip()
        return f"{self.low:g}..{self.high:g} {self.unit}".strip()


#: Heart rate in beats per minute (cuffs and oximeters): no human heart beats faster.
PULSE_RATE_RANGE = PhysicalRange(0, 300, "/min")


def check_range(
    r: ByteReader,
    at: int,
    field: str,
    value: Measured | None,
    allowed: PhysicalRange,
    *,
    converted: tuple[float, str] | None = None,
) -> None:
    """Raise the reader's `DecodeError` at byte `at` when the number `value` is outside
    `allowed`; special values and None pass. When the field is sent in another unit than
    `allowed.unit`, `converted` is (the value in `allowed.unit`, the unit it was sent in):
    kPa is checked in mm[Hg]."""
    if value is None or isinstance(value, SpecialValue):
        return
    checked = value if converted is None else converted[0]
    if checked in allowed:
        return
    unit = f" {allowed.unit}" if allowed.unit else ""
    shown = f"{checked:g}{unit}"
    if converted is not None:
        shown = f"{value:g} {converted[1]} ({checked:.4g}{unit})"
    raise r.error(f"{field} {shown} outside the physical range {allowed}", at)


def scale_decimal(value: float, power: int) -> float:
    """`value * 10**power` computed in decimal: 0.00095 kg/L * 1e5 gives exactly 95.0."""
    return float(Decimal(repr(float(value))).scaleb(power))


def _naive(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is not None:
        raise ValueError("device timestamps are naive (the device clock has no zone)")
    return value


#: A device-clock timestamp: naive (devices have no zone), None when absent or unknown.
NaiveDatetime = Annotated[datetime | None, AfterValidator(_naive)]


class BitFlags(Frozen):
    """A bit field as named booleans. Subclasses declare one bool field per entry of `BITS`.

    `BITS` maps field name -> bit mask, in bit order; `WIDTH` is the field's size in bits.
    Bits not in `BITS` are reserved: decoders reject them (`reserved_bits`).
    """

    BITS: ClassVar[dict[str, int]] = {}
    WIDTH: ClassVar[int] = 16

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        missing = set(cls.BITS) ^ set(cls.model_fields)
        if missing:
            raise TypeError(f"{cls.__name__}: BITS and fields differ in {sorted(missing)}")

    @classmethod
    def defined_mask(cls) -> int:
        mask = 0
        for bit in cls.BITS.values():
            mask |= bit
        return mask

    @classmethod
    def reserved_bits(cls, bits: int) -> int:
        """The bits of `bits` that no field names (0 when the value is valid)."""
        return bits & ~cls.defined_mask()

    @classmethod
    def from_bits(cls, bits: int) -> Any:
        """The flags of `bits`; reserved bits are ignored (check `reserved_bits` first)."""
        return cls(**{name: bool(bits & mask) for name, mask in cls.BITS.items()})

    def to_bits(self) -> int:
        bits = 0
        for name, mask in self.BITS.items():
            if getattr(self, name):
                bits |= mask
        return bits

    def names(self) -> list[str]:
        """The set flags as snake_case names (for `Reading.status`), in bit order."""
        return [name for name in self.BITS if getattr(self, name)]
