"""`hemhub alerts rules`: the default rules with their sources, as JSON or as the
markdown table docs/alerts.md carries (a test keeps the two the same)."""

from __future__ import annotations

import json
from typing import Any, Literal

from ingest import catalogue, programmes
from ingest.catalogue import DefaultRule

Format = Literal["json", "table"]

UNITS = {
    "systolic": "mm[Hg]",
    "diastolic": "mm[Hg]",
    "pulse": "/min",
    "spo2": "%",
    "glucose": "mmol/L",
    "glucose_mg_dl": "mg/dL",
    "weight": "kg",
}
ABOVE = ("_high",)


def _n(value: float) -> str:
    return f"{value:g}"


def limit_text(row: DefaultRule) -> str:
    """The limit as a physician reads it: "systolic >= 180 or diastolic >= 110 mm[Hg]"."""
    if row.kind == "weight_gain":
        return f"gain of more than {_n(row.kg or 0)} kg within {_n(row.days or 0)} days"
    if row.kind == "device_flag":
        times = "a reading" if row.count == 1 else f"{row.count} readings"
        return f"{times} flagged {' or '.join(row.flags)} (counted within {_n(row.days or 0)} days)"
    op = ">=" if row.rule.endswith(ABOVE) else "<"
    limits = dict(row.limits)
    mg = limits.pop("glucose_mg_dl", None)
    parts = [f"{m} {op} {_n(v)} {UNITS[m]}" for m, v in limits.items()]
    text = " or ".join(parts)
    if mg is not None:
        text += f" ({op} {_n(mg)} mg/dL)"
    if row.spo2_scale is not None:
        text += f", NEWS2 scale {row.spo2_scale}"
    return text


def rule_rows() -> list[dict[str, Any]]:
    """Every default rule: what it fires on, how severe, where, and its source."""
    return [
        {
            "rule": r.rule,
            "kind": r.kind,
            "severity": str(r.severity),
            "limit": limit_text(r),
            "limits": dict(r.limits),
            "programmes": list(programmes.programmes_of(r)),
            "source": {
                "guideline": r.source.guideline,
                "edition": r.source.edition,
                "implements": r.source.implements,
                "reasoning": r.source.reasoning,
            },
        }
        for r in catalogue.RULES
    ]


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown_table() -> str:
    lines = [
        "| Rule | Limit | Severity | Programmes | Source |",
        "|---|---|---|---|---|",
    ]
    for row in rule_rows():
        src = row["source"]
        source = f"{src['guideline']}, {src['edition']}: {src['implements']}"
        if src["reasoning"]:
            source += f" *Home limit:* {src['reasoning']}"
        progs = ", ".join(row["programmes"]) or "none by default"
        cells = [f"`{row['rule']}`", row["limit"], row["severity"], progs, source]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines)


def render(fmt: Format) -> str:
    if fmt == "json":
        doc = {"profile_version": programmes.PROFILE_VERSION, "rules": rule_rows()}
        return json.dumps(doc, indent=2)
    return markdown_table()
