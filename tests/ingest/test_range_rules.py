"""The compiled range rules (rules._range_table) judge exactly as the rule reads: the most
severe tier in which some value crosses its limit ("high": value >= limit, "low":
value < limit), whatever the tiers, limits and values."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ingest.alerts import SEVERITY_RANK, Severity
from ingest.rules import RANGE_SPECS, _range_table
from ingest.thresholds import Thresholds

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
