"""One set of colours: every colour the portal adds is a variable of portal/static/portal/app.css
with a light and a dark value, and every text pair meets WCAG AA (4.5:1) in both themes."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
APP_CSS = ROOT / "portal" / "static" / "portal" / "app.css"
HEX = re.compile(r"#[0-9a-fA-F]{3,8}\b")
# Pico 2.1.1's page and card backgrounds (vendored, unmodified).
PAGE = {"light": "#ffffff", "dark": "#13171f"}
CARD = {"light": "#ffffff", "dark": "#181c25"}


def _block(css: str, selector: str) -> dict[str, str]:
    start = css.index(selector + " {")
    body = css[css.index("{", start) + 1 : css.index("}", start)]
    return dict(re.findall(r"--([\w-]+):\s*(#[0-9a-fA-F]{3,6})\s*;", body))


def _themes() -> dict[str, dict[str, str]]:
    css = APP_CSS.read_text()
    light = _block(css, ":root")
    dark = _block(css, "[data-theme=dark]")
    # The system-dark block repeats the dark values exactly.
    assert _block(css, "  :root:not([data-theme])") == dark
    return {"light": light, "dark": {**light, **dark}}


def _luminance(hex_colour: str) -> float:
    h = hex_colour.lstrip("#")
    if len(h) == 3:
        h = "".join(c * 2 for c in h)
    channels = [int(h[i : i + 2], 16) / 255 for i in (0, 2, 4)]
    r, g, b = (c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def test_contrast_helper_matches_known_values():
    assert contrast("#000000", "#ffffff") == pytest.approx(21, abs=0.01)
    assert contrast("#767676", "#ffffff") == pytest.approx(4.54, abs=0.01)


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_every_text_pair_meets_wcag_aa(theme):
    v = _themes()[theme]
    pairs = {
        f"{tone} badge/pill/flash/diff": (v[f"{tone}-bg"], v[f"{tone}-fg"])
        for tone in ("ok", "bad", "warn", "info", "accent", "neutral", "danger")
    }
    for tone in ("ok", "bad", "warn"):  # pre-flight checklist and outcome text on the page
        pairs[f"{tone} text on page"] = (PAGE[theme], v[f"{tone}-fg"])
        pairs[f"{tone} text on card"] = (CARD[theme], v[f"{tone}-fg"])
    pairs["field error"] = (PAGE[theme], v["error-fg"])
    pairs["chart labels"] = (CARD[theme], v["chart-text"])
    if theme == "dark":
        pairs["muted text on card"] = (CARD[theme], v["pico-muted-color"])
    low = {name: round(contrast(*pair), 2) for name, pair in pairs.items() if contrast(*pair) < 4.5}
    assert low == {}
    # Bars and the focus ring are graphics: 3:1 against the card (WCAG 1.4.11).
    for name in ("chart-ok", "chart-bad", "chart-warn", "chart-blue", "chart-purple", "focus-ring"):
        assert contrast(CARD[theme], v[name]) >= 3, name


def test_no_hard_coded_colours_outside_the_variables():
    css = APP_CSS.read_text()
    outside = re.sub(r"(:root|\[data-theme=dark\]|:root:not\(\[data-theme\]\)) \{[^}]*\}", "", css)
    assert HEX.findall(outside) == []
    others = [
        ROOT / "activity" / "static" / "activity" / "activity.css",
        ROOT / "sessions" / "static" / "sessions" / "console.css",
        *(ROOT / "templates").rglob("*.html"),
    ]
    found = {
        str(path.relative_to(ROOT)): HEX.findall(path.read_text())
        for path in others
        if "sandbox" not in path.parts  # the simulated bitHuman room is not the portal's page
    }
    assert {path: colours for path, colours in found.items() if colours} == {}
