"""Every text of the web app in Swedish and English, and no visible text that bypasses t().

- each area's files (api/static/i18n/<area>.sv.json and .en.json) have the same keys,
  none empty;
- every key a JS file names literally (t("..."), titleKey: "...", notify("...")) exists in
  both languages; a key built from a template (t(`core.live.${state}`)) has at least one
  key under its fixed prefix;
- no visible literal text in JS or index.html: a string with letters as a child of el(),
  assigned to textContent, or as a title / aria-label / placeholder / alt (a pragmatic
  heuristic: what a page shows goes through t(); one token with digits, ':' or '/' is
  taken as an example of a format, such as "C0:11:22:33:44:55" or "Europe/Stockholm").
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

STATIC = Path(__file__).parents[2] / "api" / "static"
I18N = STATIC / "i18n"
JS_FILES = sorted((STATIC / "js").rglob("*.js"))
LANGUAGES = ("sv", "en")
#: Literal words allowed on screen: the product's name, and language names written in
#: their own language (they must read the same whichever language is on).
ALLOWED_LITERALS = {"hemhub"}

_STRING = r'"((?:[^"\\]|\\.)*)"|\'((?:[^\'\\]|\\.)*)\''
KEY_PATTERNS = [
    re.compile(r"\bt\(\s*(?:" + _STRING + r")"),
    re.compile(r"\btitleKey\s*:\s*(?:" + _STRING + r")"),
    re.compile(r"\bnotify\(\s*(?:" + _STRING + r")"),
]
TEMPLATE_KEY = re.compile(r"\bt\(\s*`([^`$]*)\$\{")
LETTERS = re.compile(r"[A-Za-zÅÄÖåäöÉé]")
#: One token with digits, ':' or '/' is an example of a format (a Bluetooth address, an
#: IANA time zone, a version), the same in every language; words are flagged.
FORMAT_EXAMPLE = re.compile(r"^(?=\S*[0-9:/])\S+$")
VISIBLE_LITERALS = [
    # el("tag", {...}, "text") and el("tag", "text"): a child text that is not a t() call
    re.compile(r"\bel\(\s*[\"'][a-z0-9]+[\"']\s*,\s*\{[^{}]*\}\s*,\s*(?:" + _STRING + r")"),
    re.compile(r"\bel\(\s*[\"'][a-z0-9]+[\"']\s*,\s*(?:" + _STRING + r")"),
    re.compile(r"\.(?:textContent|innerText)\s*=\s*(?:" + _STRING + r")"),
    re.compile(r"(?:\btitle|\"aria-label\"|\bplaceholder|\balt)\s*:\s*(?:" + _STRING + r")"),
]


def _strings(pattern: re.Pattern[str], text: str) -> list[str]:
    return [next(g for g in m.groups() if g is not None) for m in pattern.finditer(text)]


def _load(area: str, language: str) -> dict[str, str]:
    path = I18N / f"{area}.{language}.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{path.name}: a flat JSON object"
    return data


def _areas() -> list[str]:
    return sorted({p.name.split(".")[0] for p in I18N.glob("*.json")})


def _all(language: str) -> dict[str, str]:
    merged: dict[str, str] = {}
    for area in _areas():
        merged.update(_load(area, language))
    return merged


def _strip_comments(source: str) -> str:
    source = re.sub(r"/\*.*?\*/", "", source, flags=re.S)
    return re.sub(r"(?m)^\s*//.*$|(?<=[;{},)])\s*//.*$", "", source)


@pytest.mark.parametrize("area", _areas())
def test_each_area_has_the_same_keys_in_both_languages(area: str) -> None:
    for language in LANGUAGES:
        assert (I18N / f"{area}.{language}.json").exists(), f"{area}.{language}.json missing"
    sv, en = _load(area, "sv"), _load(area, "en")
    assert sorted(set(sv) - set(en)) == [], f"{area}: keys only in Swedish"
    assert sorted(set(en) - set(sv)) == [], f"{area}: keys only in English"
    for language, texts in (("sv", sv), ("en", en)):
        for key, text in texts.items():
            assert isinstance(text, str) and text.strip(), f"{area}.{language}: {key} empty"
            assert key.split(".")[0] in (area, "code"), f"{area}: key {key} of another area"


def test_every_key_used_in_js_exists_in_both_languages() -> None:
    texts = {language: _all(language) for language in LANGUAGES}
    missing: list[str] = []
    for path in JS_FILES:
        source = _strip_comments(path.read_text(encoding="utf-8"))
        name = path.relative_to(STATIC)
        for pattern in KEY_PATTERNS:
            for key in _strings(pattern, source):
                missing += [
                    f"{name}: {key} ({lang})" for lang in LANGUAGES if key not in texts[lang]
                ]
        for prefix in TEMPLATE_KEY.findall(source):
            for lang in LANGUAGES:
                if not any(k.startswith(prefix) for k in texts[lang]):
                    missing.append(f"{name}: {prefix}${{...}} ({lang})")
    assert missing == []


def test_no_visible_literal_text_in_js() -> None:
    found: list[str] = []
    for path in JS_FILES:
        source = _strip_comments(path.read_text(encoding="utf-8"))
        for pattern in VISIBLE_LITERALS:
            for literal in _strings(pattern, source):
                if (
                    LETTERS.search(literal)
                    and literal not in ALLOWED_LITERALS
                    and not FORMAT_EXAMPLE.match(literal)
                ):
                    found.append(f"{path.relative_to(STATIC)}: {literal!r}")
    assert found == [], "visible text must go through t()"


class _VisibleText(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in ("meta", "link", "br", "img", "input"):
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.open:
            del self.open[len(self.open) - 1 - self.open[::-1].index(tag) :]

    def handle_data(self, data: str) -> None:
        # <noscript> is bilingual by hand: there is no t() without scripts.
        if "body" in self.open and "noscript" not in self.open and data.strip():
            self.text.append(data.strip())


def test_index_html_shows_no_text_of_its_own() -> None:
    parser = _VisibleText()
    parser.feed((STATIC / "index.html").read_text(encoding="utf-8"))
    assert [t for t in parser.text if t not in ALLOWED_LITERALS] == []
