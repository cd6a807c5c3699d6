"""Plotly figures for the pages (pure: data in, figure out, nothing drawn here)."""
from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go

ABOVE, BELOW = "#d62728", "#1f77b4"  # above / below the decision threshold
HEAD_COLOURS = {"fusion": "#444444", "image": "#2ca02c", "text": "#9467bd"}
_LAYOUT = dict(margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.2))


HALO = "#ffffff"  # drawn under a dark tick so it shows on the dark theme's near-black too


def _threshold_markers(thresholds: dict, y: list, name: str = "threshold", colour: str = "black") -> go.Scatter:
    return go.Scatter(x=[thresholds[f] for f in y], y=y, mode="markers", name=name,
                      marker=dict(symbol="line-ns-open", size=26, color=colour, line=dict(width=3, color=colour)),
                      hovertemplate="%{y}: threshold %{x:.3f}<extra></extra>")


def _threshold_halo(thresholds: dict, y: list) -> go.Scatter:
    """A wider white tick under the black one: black on the light theme, a white edge on the dark."""
    return go.Scatter(x=[thresholds[f] for f in y], y=y, mode="markers", name="threshold edge", hoverinfo="skip",
                      showlegend=False,
                      marker=dict(symbol="line-ns-open", size=28, color=HALO, line=dict(width=7, color=HALO)))


def probability_bars(probs: dict, thresholds: dict, *, title: str = "Fused probability",
                     unreliable: dict[str, str] | None = None, flagged: set[str] | None = None) -> go.Figure:
    """Horizontal bar per finding, red when flagged (``flagged``: the decisions' own, core.serving.decision;
    without it, at or above its threshold), with a threshold tick. The values (3 decimals) sit in their own
    column right of the axis (never on a tick); findings in ``unreliable`` (finding -> evidence line) are
    marked under their name, evidence on hover."""
    y = list(probs)[::-1]  # the model's findings, first on top
    unreliable = unreliable or {}
    colours = [ABOVE if (f in flagged if flagged is not None else probs[f] >= thresholds[f]) else BELOW for f in y]
    fig = go.Figure(go.Bar(x=[probs[f] for f in y], y=y, orientation="h", marker_color=colours, name="probability",
                           customdata=[unreliable.get(f, "") for f in y],
                           hovertemplate="%{y}: %{x:.3f}<br>%{customdata}<extra></extra>"))
    fig.add_trace(_threshold_halo(thresholds, y))
    fig.add_trace(_threshold_markers(thresholds, y))
    fig.add_trace(go.Scatter(x=[1.03] * len(y), y=y, mode="text", text=[f"{probs[f]:.3f}" for f in y],
                             textposition="middle right", hoverinfo="skip", name="value",
                             textfont=dict(color=colours)))
    ticks = [f + ("<br><span style='font-size:10px;color:#b45309'>not reliable from the image</span>"
                  if f in unreliable else "") for f in y]
    fig.update_layout(title=title, height=max(160, 60 * len(y) + 60), showlegend=False, **_LAYOUT,
                      xaxis=dict(range=[0, 1.19], title="probability", tickvals=[0, 0.25, 0.5, 0.75, 1]),
                      yaxis=dict(tickvals=y, ticktext=ticks))
    return fig


def head_bars(heads: dict[str, dict], head_thresholds: dict[str, dict], *,
              fused_thresholds: dict | None = None) -> go.Figure:
    """Grouped bars: one colour per head, each head's threshold as a tick of its colour
    (or, where only the fused thresholds are known, those as black ticks)."""
    y = list(next(iter(heads.values())))[::-1]  # the model's findings, first on top
    fig = go.Figure()
    for head, probs in heads.items():
        fig.add_trace(go.Bar(x=[probs[f] for f in y], y=y, orientation="h", name=head,
                             marker_color=HEAD_COLOURS.get(head),
                             hovertemplate=f"{head} %{{y}}: %{{x:.3f}}<extra></extra>"))
    for head in heads:
        if head in head_thresholds:
            fig.add_trace(_threshold_markers(head_thresholds[head], y, f"{head} threshold", HEAD_COLOURS.get(head)))
    if fused_thresholds and not head_thresholds:
        fig.add_trace(_threshold_halo(fused_thresholds, y))
        fig.add_trace(_threshold_markers(fused_thresholds, y, "fused threshold"))
    fig.update_layout(title="Image head vs text head", barmode="group", height=340,
                      xaxis=dict(range=[0, 1.02], title="probability"), **_LAYOUT)
    return fig


def roc_figure(curves: dict[str, tuple]) -> go.Figure:
    """curves: finding -> (fpr, tpr, auc)."""
    fig = go.Figure(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="gray"), name="chance"))
    for finding, (fpr, tpr, auc) in curves.items():
        fig.add_trace(go.Scatter(x=fpr, y=tpr, mode="lines", name=f"{finding} (AUC {auc:.2f})"))
    fig.update_layout(title="ROC", xaxis_title="1 − specificity", yaxis_title="sensitivity", height=400, **_LAYOUT)
    return fig


def reliability_figure(curves: dict[str, tuple]) -> go.Figure:
    """curves: finding -> (mean predicted, observed fraction) per bin."""
    fig = go.Figure(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="gray"),
                               name="perfect calibration"))
    for finding, (pred, obs) in curves.items():
        fig.add_trace(go.Scatter(x=pred, y=obs, mode="lines+markers", name=finding))
    fig.update_layout(title="Calibration (reliability)", xaxis_title="mean predicted probability",
                      yaxis_title="observed fraction positive", height=400, **_LAYOUT)
    return fig


# -- training monitor -------------------------------------------------------------------------

def loss_figure(steps: pd.DataFrame) -> go.Figure:
    """steps: columns index (logged step #), loss, phase, epoch, step."""
    fig = go.Figure()
    for phase, part in steps.groupby("phase", sort=False):
        fig.add_trace(go.Scatter(x=part["index"], y=part["loss"], mode="lines+markers", name=phase,
                                 customdata=part[["epoch", "step"]],
                                 hovertemplate="loss %{y:.4f}<br>epoch %{customdata[0]} "
                                               "step %{customdata[1]}<extra></extra>"))
    fig.update_layout(title="Training loss", xaxis_title="logged step", yaxis_title="loss", height=320, **_LAYOUT)
    return fig


def lines_figure(frame: pd.DataFrame, *, x: str, y: str, colour: str, title: str, y_title: str,
                 x_title: str | None = None, log_y: bool = False, y_range: list | None = None,
                 whole_x: bool = False) -> go.Figure:
    """One line per value of ``colour`` (learning rates per group, AUC per finding, ...)."""
    fig = go.Figure()
    for name, part in frame.groupby(colour, sort=False):
        fig.add_trace(go.Scatter(x=part[x], y=part[y], mode="lines+markers", name=str(name)))
    fig.update_layout(title=title, xaxis_title=x_title or x.replace("_", " "), yaxis_title=y_title, height=320,
                      **_LAYOUT)
    if whole_x:  # epochs are counted, not measured
        fig.update_xaxes(tickmode="linear", dtick=1)
    if log_y:
        fig.update_yaxes(type="log")
    if y_range:
        fig.update_yaxes(range=y_range)
    return fig


def finite(value) -> bool:
    return value is not None and isinstance(value, (int, float)) and math.isfinite(value)
