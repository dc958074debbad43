"""Text the API takes in and quotes back: what it refuses, and how much of it it repeats."""

from __future__ import annotations

import json
from typing import Any

#: How many characters of a rejected input a 422 reply quotes.
EXCERPT_CHARS = 80


def text_problem(value: str) -> str | None:
    """Why PostgreSQL (and UTF-8) cannot take `value`, or None when they can."""
    if "\x00" in value:
        return "contains a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone surrogate (not valid Unicode text)"
    return None


def first_text_problem(
    value: Any, loc: tuple[str | int, ...] = ()
) -> tuple[tuple[str | int, ...], str] | None:
    """The first string (key or value) anywhere in a JSON-like value that cannot be
    stored, with where it is and why; None when every string can."""
    if isinstance(value, str):
        problem = text_problem(value)
        return (loc, problem) if problem else None
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(k, str) and (problem := text_problem(k)):
                return (*loc, excerpt(k)), f"key {problem}"
            found = first_text_problem(v, (*loc, k))
            if found:
                return found
    if isinstance(value, list | tuple):
        for i, v in enumerate(value):
            found = first_text_problem(v, (*loc, i))
            if found:
                return found
    return None


def excerpt(value: Any, limit: int = EXCERPT_CHARS) -> str:
    """At most `limit` characters of `value` (JSON for non-strings), safe to send back."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    cut = text[:limit] + ("…" if len(text) > limit else "")
    # Lone surrogates cannot be encoded as UTF-8 in a reply: quote them escaped.
    return cut.encode("utf-8", "backslashreplace").decode("utf-8")
