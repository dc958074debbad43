"""Building blocks shared by the characteristic codecs: frozen models, measured values, bits.

(The bounds-checked byte reader lives in `ieee11073.ByteReader`; the number formats next to
it.) Everything here is pure and has no I/O.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict

from device_drivers.codecs.ieee11073 import Measured, SpecialValue


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
