"""The default clinical rules, each with its source: the one table the programme profiles
(ingest.programmes), docs/alerts.md and `hemhub alerts rules` are made from.

Every row is one limit a physician signs off: the rule and severity it sets, the
limit, which programmes get it (`BASELINE`: every programme, the safety limits no
resident should pass unseen; a programme's own row for the same rule and severity
tightens it), and its source: guideline, edition, the sentence or table it implements,
and the reasoning where the home-monitoring limit differs from the guideline's clinical
one. A change here changes the profiles: raise `programmes.PROFILE_VERSION` with it.

Units: pressures mm[Hg], pulse /min, SpO2 %, glucose mmol/L (with the guideline's own
mg/dL value as `glucose_mg_dl`, which judges readings sent in mg/dL), weight kg.
A "high"/"above" limit fires at value >= limit, a "low" limit at value < limit, so
"<= 90" is written as "< 91" for values the device reports in whole units.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from ingest.alerts import Severity

#: The programmes a row applies to when it is a safety limit for everyone.
BASELINE = "all"
PROGRAMMES: tuple[str, ...] = ("hypertension", "heart_failure", "copd", "diabetes")

Kind = Literal["range", "weight_gain", "device_flag"]


@dataclass(frozen=True)
class Source:
    guideline: str
    edition: str
    #: The sentence, table or chart row the limit implements.
    implements: str
    #: Why the home-monitoring limit differs from the guideline's (empty: it does not).
    reasoning: str = ""


@dataclass(frozen=True)
class DefaultRule:
    """One sourced limit: a tier of a range rule, a weight-gain trend or a device flag."""

    rule: str
    kind: Kind
    severity: Severity
    #: Programmes that get it: (BASELINE,) or programme names.
    programmes: tuple[str, ...]
    source: Source
    #: range: metric -> limit (one tier of `rule`)
    limits: Mapping[str, float] = field(default_factory=dict)
    #: range rule spo2_low only: the NEWS2 SpO2 scale the tier belongs to.
    spo2_scale: int | None = None
    #: weight_gain: more than `kg` within `days`; device_flag: `count` within `days`.
    kg: float | None = None
    days: float | None = None
    count: int | None = None
    #: device_flag: the reading status flags that fire it.
    flags: tuple[str, ...] = ()
    #: weight_gain: programmes where it is on by default (others have it, switched off).
    on_for: tuple[str, ...] = ()


NEWS2 = "NEWS2, Royal College of Physicians"
NEWS2_ED = "2017 (updated report of a working party)"
ESH = "ESH Guidelines for the management of arterial hypertension"
ESH_ED = "2023 (J Hypertens 2023;41:1874-2071)"
ADA = "ADA Standards of Care in Diabetes, section 6 (glycemic goals and hypoglycemia)"
ADA_ED = "2024 (Diabetes Care 2024;47 Suppl 1)"
HOME_NEWS2 = (
    "NEWS2 was made for hospital observations: here a single parameter scoring 3 is"
    " 'high', 2 is 'medium'; a score of 1 (continued routine monitoring in NEWS2) raises"
    " no home alert, to spare nurses alarms on values many elderly residents live with."
)


def _spo2(
    scale: int, severity: Severity, below: int, implements: str, reasoning: str = ""
) -> DefaultRule:
    return DefaultRule(
        "spo2_low",
        "range",
        severity,
        (BASELINE,) if scale == 1 else ("copd",),
        Source(NEWS2, NEWS2_ED, implements, reasoning or HOME_NEWS2),
        {"spo2": below},
        spo2_scale=scale,
    )


RULES: tuple[DefaultRule, ...] = (
    # --- blood pressure, high ------------------------------------------------------------
    DefaultRule(
        "blood_pressure_high",
        "range",
        Severity.MEDIUM,
        ("hypertension",),
        Source(
            ESH,
            ESH_ED,
            "Classification of office blood pressure: grade 2 hypertension is systolic"
            " 160-179 and/or diastolic 100-109 mm[Hg].",
            "Grade 1 (140-159/90-99) raises no alert: residents of the programme are known"
            " hypertensives under treatment, whose grade 1 values are for the routine review;"
            " home values run lower than office ones (home hypertension is >= 135/85), so a"
            " grade 2 value at home is at least as high as grade 2 in the office.",
        ),
        {"systolic": 160, "diastolic": 100},
    ),
    DefaultRule(
        "blood_pressure_high",
        "range",
        Severity.HIGH,
        (BASELINE,),
        Source(
            ESH,
            ESH_ED,
            "Classification of office blood pressure: grade 3 hypertension is systolic"
            " >= 180 and/or diastolic >= 110 mm[Hg].",
        ),
        {"systolic": 180, "diastolic": 110},
    ),
    DefaultRule(
        "blood_pressure_high",
        "range",
        Severity.CRITICAL,
        (BASELINE,),
        Source(
            "NEWS2 (systolic); NICE NG136 hypertension in adults (diastolic)",
            "NEWS2 2017; NICE NG136 2019, updated 2023",
            "NEWS2 chart 1: systolic >= 220 scores 3. NICE NG136 1.5: a clinic blood"
            " pressure of 180/120 mm[Hg] and higher calls for same-day assessment when"
            " signs of accelerated hypertension are present.",
            "A hypertensive emergency is severe hypertension with acute organ damage, which"
            " a home reading cannot see: the crisis level is where a nurse contacts the"
            " resident at once. Systolic 180 alone is grade 3 (high); the crisis level takes"
            " the diastolic 120 of the same-day line and the systolic at which NEWS2 scores"
            " 3, so that 214/126 is critical and 180/110 is high.",
        ),
        {"systolic": 220, "diastolic": 120},
    ),
    # --- blood pressure, low -------------------------------------------------------------
    DefaultRule(
        "blood_pressure_low",
        "range",
        Severity.HIGH,
        (BASELINE,),
        Source(
            NEWS2,
            NEWS2_ED,
            "Chart 1: systolic blood pressure <= 90 mm[Hg] scores 3 (urgent review).",
            "Written < 91: cuffs report whole mm[Hg]. The 91-100 band (score 2) raises no"
            " home alert: treated heart-failure and elderly residents often live there.",
        ),
        {"systolic": 91},
    ),
    DefaultRule(
        "blood_pressure_low",
        "range",
        Severity.CRITICAL,
        (BASELINE,),
        Source(
            "hemhub home-monitoring limit (no guideline grades below NEWS2's <= 90)",
            "profile version 2",
            "Systolic below 80 mm[Hg]: severe hypotension.",
            "NEWS2 stops grading at <= 90 (score 3). A systolic below 80 at home, where no"
            " one watches the resident, is treated as possible shock or a fall risk needing"
            " contact at once. A project choice for clinical review, not a guideline value.",
        ),
        {"systolic": 80},
    ),
    # --- pulse ---------------------------------------------------------------------------
    DefaultRule(
        "pulse_high",
        "range",
        Severity.MEDIUM,
        (BASELINE,),
        Source(NEWS2, NEWS2_ED, "Chart 1: pulse 111-130 /min scores 2.", HOME_NEWS2),
        {"pulse": 111},
    ),
    DefaultRule(
        "pulse_high",
        "range",
        Severity.HIGH,
        (BASELINE,),
        Source(NEWS2, NEWS2_ED, "Chart 1: pulse >= 131 /min scores 3."),
        {"pulse": 131},
    ),
    DefaultRule(
        "pulse_low",
        "range",
        Severity.HIGH,
        (BASELINE,),
        Source(
            NEWS2,
            NEWS2_ED,
            "Chart 1: pulse <= 40 /min scores 3.",
            "Written < 41: devices report whole beats a minute. 41-50 (score 1) raises no"
            " home alert (beta-blocked residents live there).",
        ),
        {"pulse": 41},
    ),
    # --- SpO2, NEWS2 scale 1 (everyone) and scale 2 (hypercapnic respiratory failure) ----
    _spo2(1, Severity.MEDIUM, 94, "Chart 1, SpO2 scale 1: 92-93 % scores 2."),
    _spo2(1, Severity.HIGH, 92, "Chart 1, SpO2 scale 1: <= 91 % scores 3."),
    DefaultRule(
        "spo2_low",
        "range",
        Severity.CRITICAL,
        (BASELINE,),
        Source(
            "BTS guideline for oxygen use in healthcare and emergency settings",
            "2017 (Thorax 2017;72 Suppl 1)",
            "Patients not at risk of hypercapnia with SpO2 below 85 % start on a reservoir"
            " mask at 15 L/min (critical illness).",
            "NEWS2 stops at score 3 (<= 91 %); below 85 % the BTS treats the patient as"
            " critically hypoxaemic, so the home alert is critical.",
        ),
        {"spo2": 85},
        spo2_scale=1,
    ),
    _spo2(
        2,
        Severity.MEDIUM,
        86,
        "Chart 1, SpO2 scale 2 (target 88-92 % in hypercapnic respiratory failure):"
        " 84-85 % scores 2.",
        HOME_NEWS2 + " 86-87 % (score 1) and 88-92 % (the BTS target range) raise none.",
    ),
    _spo2(2, Severity.HIGH, 84, "Chart 1, SpO2 scale 2: <= 83 % scores 3."),
    _spo2(
        2,
        Severity.CRITICAL,
        80,
        "Chart 1, SpO2 scale 2: <= 83 % scores 3 (the highest score).",
        "Scale 2 has no level beyond score 3; 80 % is a project choice for clinical"
        " review: below it a resident at risk of hypercapnia is as critically hypoxaemic"
        " as one below 85 % on scale 1."
        " Scale 2's scores for >= 93 % on oxygen are not applied: hemhub does not know"
        " whether the resident breathes oxygen.",
    ),
    # --- glucose -------------------------------------------------------------------------
    DefaultRule(
        "glucose_low",
        "range",
        Severity.HIGH,
        (BASELINE,),
        Source(
            ADA,
            ADA_ED,
            "Classification of hypoglycemia: level 1 is glucose < 70 mg/dL (3.9 mmol/L) and"
            " >= 54 mg/dL (3.0 mmol/L).",
            "Judged in the unit the meter sends: 70 mg/dL is not level 1, although"
            " 70 / 18.016 = 3.89 mmol/L is below 3.9.",
        ),
        {"glucose": 3.9, "glucose_mg_dl": 70},
    ),
    DefaultRule(
        "glucose_low",
        "range",
        Severity.CRITICAL,
        (BASELINE,),
        Source(
            ADA,
            ADA_ED,
            "Classification of hypoglycemia: level 2 is glucose < 54 mg/dL (3.0 mmol/L)"
            " (clinically significant hypoglycemia).",
        ),
        {"glucose": 3.0, "glucose_mg_dl": 54},
    ),
    DefaultRule(
        "glucose_high",
        "range",
        Severity.MEDIUM,
        ("diabetes",),
        Source(
            "International consensus on time in range (Battelino et al.)",
            "2019 (Diabetes Care 2019;42:1593-1603)",
            "Level 2 (very high) hyperglycaemia: glucose > 250 mg/dL (> 13.9 mmol/L).",
            "Fires at 13.9 mmol/L / 250 mg/dL itself: meters report 0.1 mmol/L or 1 mg/dL,"
            " and the consensus value is the rounded boundary.",
        ),
        {"glucose": 13.9, "glucose_mg_dl": 250},
    ),
    DefaultRule(
        "glucose_high",
        "range",
        Severity.HIGH,
        ("diabetes",),
        Source(
            "hemhub home-monitoring limit (between level 2 hyperglycaemia and HHS)",
            "profile version 1, kept in version 2",
            "Glucose >= 20 mmol/L (360 mg/dL).",
            "No guideline grades between level 2 (13.9 mmol/L) and the hyperosmolar level"
            " (33.3 mmol/L); at 20 mmol/L a resident on glucose-lowering treatment needs"
            " contact the same day (ketones, fluids). A project choice for clinical review.",
        ),
        {"glucose": 20.0, "glucose_mg_dl": 360},
    ),
    DefaultRule(
        "glucose_high",
        "range",
        Severity.CRITICAL,
        (BASELINE,),
        Source(
            "ADA consensus report: hyperglycemic crises in adults with diabetes",
            "2024 (Diabetes Care 2024;47:1257-1275)",
            "Hyperglycaemic hyperosmolar state: plasma glucose >= 600 mg/dL (33.3 mmol/L).",
            "Severe hyperglycaemia: a home reading cannot measure osmolality or ketones, so"
            " the glucose criterion alone makes it critical.",
        ),
        {"glucose": 33.3, "glucose_mg_dl": 600},
    ),
    # --- weight --------------------------------------------------------------------------
    DefaultRule(
        "weight_gain_3d",
        "weight_gain",
        Severity.HIGH,
        (BASELINE,),
        Source(
            "ESC Guidelines for the diagnosis and treatment of acute and chronic heart"
            " failure, patient self-care advice",
            "2021 (Eur Heart J 2021;42:3599-3726)",
            "A sudden unexpected weight gain of more than 2 kg in 3 days should prompt the"
            " patient to alert the heart-failure team and/or increase the diuretic dose.",
            "Available to every programme where a clinician turns it on; on by default for"
            " heart failure.",
        ),
        kg=2.0,
        days=3,
        on_for=("heart_failure",),
    ),
    DefaultRule(
        "weight_gain_7d",
        "weight_gain",
        Severity.MEDIUM,
        (BASELINE,),
        Source(
            "American Heart Association, heart failure self-check plan (patient advice)",
            "heart.org patient education (undated web page)",
            "Call the care team on a weight gain of more than 5 pounds (2.3 kg) in a week.",
            "A steady gain the 3-day rule misses. 5 lb is 2.27 kg, written 2.3 kg at the"
            " scale's 0.1 kg resolution; medium, below the 3-day rule's high.",
        ),
        kg=2.3,
        days=7,
        on_for=("heart_failure",),
    ),
    # --- device-reported clinical flags ---------------------------------------------------
    DefaultRule(
        "irregular_pulse",
        "device_flag",
        Severity.LOW,
        (BASELINE,),
        Source(
            "ESC Guidelines for the management of atrial fibrillation",
            "2024 (Eur Heart J 2024;45:3314-3414)",
            "Screening for atrial fibrillation; a device's irregular-pulse signal is a"
            " screening signal, and the diagnosis needs an ECG.",
            "Every flagged reading is surfaced (never dropped) and the reason counts the"
            " flags within 7 days: a repeated irregular pulse in a week is worth a nurse's"
            " look and an ECG. Low: a cuff's flag is not a diagnosis.",
        ),
        count=1,
        days=7,
        flags=("irregular_pulse",),
    ),
    DefaultRule(
        "pulse_out_of_device_range",
        "device_flag",
        Severity.LOW,
        (BASELINE,),
        Source(
            "Bluetooth SIG Blood Pressure Measurement characteristic, measurement status",
            "GATT Specification Supplement (current)",
            "Pulse rate range detection: the pulse exceeded the cuff's upper or lower limit.",
            "The pulse value itself is judged by pulse_high/pulse_low; the flag is kept"
            " visible, counted within 7 days, at low severity.",
        ),
        count=1,
        days=7,
        flags=("pulse_above_range", "pulse_below_range"),
    ),
    DefaultRule(
        "glucose_below_meter_range",
        "device_flag",
        Severity.CRITICAL,
        (BASELINE,),
        Source(
            ADA,
            ADA_ED,
            "Level 2 hypoglycaemia is glucose < 54 mg/dL (3.0 mmol/L); a meter's 'result"
            " too low' (Bluetooth Glucose Service sensor status) is below its measuring"
            " range, which ends far below that.",
            "Not low like other flags: the meter could not give a number because the value"
            " is below its range, so it is treated as level 2 hypoglycaemia.",
        ),
        count=1,
        days=7,
        flags=("result_too_low",),
    ),
    DefaultRule(
        "glucose_above_meter_range",
        "device_flag",
        Severity.HIGH,
        (BASELINE,),
        Source(
            "ADA consensus report: hyperglycemic crises in adults with diabetes",
            "2024 (Diabetes Care 2024;47:1257-1275)",
            "A meter's 'result too high' is above its measuring range (commonly 600 mg/dL,"
            " 33.3 mmol/L, the hyperosmolar level).",
            "High, not critical: meters' upper ends vary (some stop near 500 mg/dL); the"
            " flag says severe hyperglycaemia without its value.",
        ),
        count=1,
        days=7,
        flags=("result_too_high",),
    ),
)


def rows(kind: Kind | None = None) -> list[DefaultRule]:
    return [r for r in RULES if kind is None or r.kind == kind]
