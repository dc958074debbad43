"""The compiled range rules (rules._range_table) judge exactly as the rule reads: the most
severe tier in which some value crosses its limit ("high": value >= limit, "low":
value < limit), whatever the tiers, limits and values."""

from __future__ import annotations

import uuid
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from hemhub.contract import Quantity
from ingest.alerts import SEVERITY_RANK, Candidate, Severity
from ingest.rules import RANGE_SPECS, _range_table, is_quiet, judge_reading
from ingest.thresholds import Effective, Thresholds, programme_default
from tests.factories import bp_reading

METRICS = ("systolic", "diastolic")
limit = st.floats(min_value=40, max_value=250, allow_nan=False)
tiers = st.dictionaries(
    st.sampled_from(list(Severity)),
    st.dictionaries(st.sampled_from(METRICS), limit, min_size=1),
    min_size=1,
)
value = st.one_of(st.none(), st.floats(min_value=20, max_value=300, allow_nan=False))


def naive(
    tiers: dict[Severity, dict[str, float]], values: dict[str, float | None], above: bool
) -> Severity | None:
    crossed = [
        sev
        for sev, limits in tiers.items()
        if any(
            v is not None and m in limits and (v >= limits[m] if above else v < limits[m])
            for m, v in values.items()
        )
    ]
    return max(crossed, key=SEVERITY_RANK.__getitem__, default=None)


@given(tiers=tiers, systolic=value, diastolic=value, rule=st.sampled_from(["high", "low"]))
def test_compiled_rule_fires_the_most_severe_crossed_tier(
    tiers: dict[Severity, dict[str, float]],
    systolic: float | None,
    diastolic: float | None,
    rule: str,
) -> None:
    name = f"blood_pressure_{rule}"
    doc = Thresholds.model_validate({"ranges": {name: tiers}})
    [compiled] = _range_table(doc)[RANGE_SPECS[name].types[0]]
    values: dict[str, float | None] = {"systolic": systolic, "diastolic": diastolic}
    fired = compiled.fires(values)  # type: ignore[arg-type]
    assert (fired[0] if fired else None) == naive(tiers, values, RANGE_SPECS[name].above)
    if fired:
        assert fired[1] == tiers[fired[0]]


def test_table_is_built_once_per_document_and_never_mixed_up() -> None:
    a = Thresholds.model_validate({"ranges": {"pulse_high": {"high": {"pulse": 100}}}})
    b = Thresholds.model_validate({"ranges": {"pulse_high": {"high": {"pulse": 150}}}})
    assert _range_table(a) is _range_table(a)
    [rule_a] = _range_table(a)[RANGE_SPECS["pulse_high"].types[0]]
    [rule_b] = _range_table(b)[RANGE_SPECS["pulse_high"].types[0]]
    assert rule_a.fires({"pulse": 120.0}) is not None
    assert rule_b.fires({"pulse": 120.0}) is None


# --- the quiet fast path (rules.is_quiet) ----------------------------------------------

# Whole numbers, so that values fall exactly on limits often enough.
whole = st.integers(min_value=40, max_value=250).map(float)
bp_tiers = st.dictionaries(
    st.sampled_from(list(Severity)),
    st.dictionaries(st.sampled_from(METRICS), whole, min_size=1),
    min_size=1,
)
pulse_tiers = st.dictionaries(
    st.sampled_from(list(Severity)), st.fixed_dictionaries({"pulse": whole}), min_size=1
)
ranges = st.fixed_dictionaries(
    {},
    optional={
        "blood_pressure_high": bp_tiers,
        "blood_pressure_low": bp_tiers,
        "pulse_high": pulse_tiers,
        "pulse_low": pulse_tiers,
    },
)
loinc_codes = st.sampled_from(
    [("systolic", "8480-6"), ("diastolic", "8462-4"), ("pulse", "8867-4"), ("other", "1-1")]
)
units = st.sampled_from(["mm[Hg]", "/min", "kPa"])
# a flag the default thresholds call doubtful, and one they do not
flags = st.lists(st.sampled_from(["cuff_too_loose", "irregular_pulse"]), max_size=2)


def _candidate(values: list[tuple[tuple[str, str], float | None, str]], status: list[str]) -> Any:
    quantities = [
        Quantity(name=name, loinc=code, value=v, unit=unit) for (name, code), v, unit in values
    ]
    reading = bp_reading().model_copy(update={"values": quantities, "status": status})
    return Candidate(reading, uuid.uuid4(), "t", False)


@settings(max_examples=400)
@given(ranges=ranges, status=flags, data=st.data())
def test_a_quiet_reading_is_one_that_fires_nothing(
    ranges: dict[str, Any], status: list[str], data: st.DataObject
) -> None:
    """is_quiet never skips a reading that would fire; and a reading with one value per
    metric that fires nothing is quiet (the fast path is exact there)."""
    limits = sorted({v for t in ranges.values() for lim in t.values() for v in lim.values()})
    # values on the limits themselves too: the boundaries are where a fast path errs
    value = st.one_of(
        st.none(),
        st.floats(min_value=0, max_value=300, allow_nan=False),
        *([st.sampled_from(limits)] if limits else []),
    )
    values = data.draw(st.lists(st.tuples(loinc_codes, value, units), min_size=1, max_size=3))
    doc = Thresholds.model_validate({"ranges": ranges})
    eff = Effective(thresholds=doc, version=1, programme="")
    c = _candidate(values, status)
    findings, _ = judge_reading(c, eff, None)
    if is_quiet(c.reading, eff):
        assert findings == []
    codes = [code for (_, code), _, _ in values]
    if not findings and len(set(codes)) == len(codes):
        assert is_quiet(c.reading, eff)
    # and with nothing to clear, the fast path gives what the full judgement gives
    assert judge_reading(c, eff, frozenset()) == (findings, [])


# --- glucose in two units ---------------------------------------------------------------

glucose_units = st.sampled_from([("2339-0", "mg/dL"), ("15074-8", "mmol/L")])


@settings(max_examples=300)
@given(unit=glucose_units, data=st.data())
def test_quiet_glucose_readings_fire_nothing_in_either_unit(
    unit: tuple[str, str], data: st.DataObject
) -> None:
    """A tier with a mg/dL limit judges mg/dL readings by it; the quiet fast path folds
    that limit into the mmol/L band and never skips a reading that would fire."""
    loinc, ucum = unit
    eff = programme_default("diabetes")
    tiers = eff.thresholds.ranges
    limits = [v for r in ("glucose_low", "glucose_high") for t in tiers[r].values()
              for m, v in t.items() if (m == "glucose_mg_dl") == (ucum == "mg/dL")]  # fmt: skip
    v = data.draw(st.one_of(st.sampled_from(limits), st.floats(min_value=0.5, max_value=700)))
    quantity = Quantity(name="glucose", loinc=loinc, value=v, unit=ucum)
    r = bp_reading().model_copy(update={"measurement_type": "glucose", "values": [quantity]})
    c = Candidate(r, uuid.uuid4(), "t", False)
    findings, _ = judge_reading(c, eff, None)
    if is_quiet(r, eff):
        assert findings == []
    assert judge_reading(c, eff, frozenset()) == (findings, [])
