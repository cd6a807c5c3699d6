"""Chart details a user reads: the threshold tick shows on the light and the dark theme."""
from __future__ import annotations

from ui.charts import head_bars, probability_bars

FINDINGS = ("Pneumonia", "Edema", "Cardiomegaly")
LIGHT_BG, DARK_BG = "#ffffff", "#0e1117"  # Streamlit's light and dark backgrounds


def _luminance(colour: str) -> float:
    named = {"black": "#000000", "white": "#ffffff"}
    h = named.get(colour, colour).lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) / 255 for i in (0, 2, 4))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _visible_on(colours: list[str], background: str) -> bool:
    return any(abs(_luminance(c) - _luminance(background)) > 0.5 for c in colours)


def test_the_threshold_tick_shows_on_both_themes():
    probs = dict(zip(FINDINGS, (0.1, 0.6, 0.3), strict=True))
    thresholds = dict.fromkeys(FINDINGS, 0.4)
    for fig in (probability_bars(probs, thresholds), head_bars({"image": probs}, {}, fused_thresholds=thresholds)):
        ticks = [t.marker.line.color for t in fig.data if t.type == "scatter" and t.marker.symbol == "line-ns-open"]
        assert ticks, "no threshold tick drawn"
        assert _visible_on(ticks, LIGHT_BG) and _visible_on(ticks, DARK_BG), ticks


def test_bars_take_their_colour_from_the_decisions_and_show_three_decimals():
    """A bar is red when its finding is flagged (core.serving.decision), not when a rounded number looks
    above a tick; its value reads to 3 decimals, as every table does."""
    probs = {"Edema": 0.068, "Cardiomegaly": 0.3}
    thresholds = {"Edema": 0.068107, "Cardiomegaly": 0.5}
    fig = probability_bars(probs, thresholds, flagged={"Edema"})
    bars = next(t for t in fig.data if t.type == "bar")
    colours = dict(zip(bars.y, bars.marker.color, strict=True))
    assert colours == {"Edema": "#d62728", "Cardiomegaly": "#1f77b4"}
    labels = next(t for t in fig.data if t.type == "scatter" and t.mode == "text").text
    assert sorted(labels) == ["0.068", "0.300"]
