"""Plotly figures built in Python from small aggregated frames: the rule-set heat map of the dashboards and the
funnel and stacked charts the notebooks draw (the filtered pages draw theirs in the page, templates/dashboard.js,
with the same colours and conventions).

One colour per category everywhere (Okabe-Ito palette, safe for colour-blind readers); every axis labelled with
its unit; a suppressed cell (1-10, or the complement that would reveal one) is drawn as a grey cross where its
bar would be, labelled in the legend and the hover text, never as an empty gap a reader could take for zero.
"""

from __future__ import annotations

from assets.publish.statistics import Z_95, Z_998, funnel_limits

CATEGORY_COLOURS = {
    "indicated": "#0072B2",
    "potentially_unnecessary": "#D55E00",
    "insufficient_information": "#E69F00",
    "out_of_scope": "#999999",
    "other_in_scope": "#56B4E9",
}
CATEGORY_LABELS = {
    "indicated": "Indicated",
    "potentially_unnecessary": "Potentially unnecessary",
    "insufficient_information": "Insufficient information",
    "out_of_scope": "Out of scope",
    "other_in_scope": "Indicated or insufficient information",
}
NEUTRAL = "#56B4E9"
DARK = "#1f2933"


def _layout(fig, title: str, x: str, y: str, height: int = 420):
    fig.update_layout(
        title={"text": title, "x": 0.01, "font": {"size": 16}},
        xaxis_title=x, yaxis_title=y, height=height, template="plotly_white",
        margin={"l": 70, "r": 30, "t": 60, "b": 60}, legend={"orientation": "h", "y": -0.2},
        font={"family": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", "size": 13},
    )
    return fig


def funnel_figure(units: list[str], unnecessary: list, totals: list[int], unit_label: str, centre: float,
                  adjusted: bool = False, title: str | None = None, y_title: str = "share potentially unnecessary",
                  reference: tuple[float, str] | None = None, x_title: str | None = None):
    """Funnel plot: each unit's rate against its volume, with 95% and 99.8% limits around the overall rate.
    `adjusted`: the counts are case-mix-adjusted (observed / expected x overall x volume); `reference`: a
    published rate drawn as a line of its own, (rate, label)."""
    import plotly.graph_objects as go

    top = max(totals) if totals else 10
    ns = [max(5, top * i / 200) for i in range(1, 201)]
    fig = go.Figure()
    for z, name, dash in ((Z_998, "99.8% limits", "dash"), (Z_95, "95% limits", "dot")):
        lower = [funnel_limits(centre, n, z)[0] for n in ns]
        upper = [funnel_limits(centre, n, z)[1] for n in ns]
        fig.add_trace(go.Scatter(x=ns, y=upper, name=name, line={"color": "#7b8794", "dash": dash}))
        fig.add_trace(go.Scatter(x=ns, y=lower, showlegend=False, line={"color": "#7b8794", "dash": dash},
                                 hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=[0, top * 1.05], y=[centre, centre], name=f"overall {centre:.1%}", mode="lines",
                             line={"color": DARK, "width": 1}))
    if reference is not None:
        fig.add_trace(go.Scatter(x=[0, top * 1.05], y=[reference[0], reference[0]], name=reference[1], mode="lines",
                                 line={"color": "#009E73", "width": 2, "dash": "longdash"}))
    rates = [u / t for u, t in zip(unnecessary, totals)]
    hover = ("%{text}: %{y:.1%} adjusted for case mix (%{x} spine MRIs)<extra></extra>" if adjusted
             else "%{text}: %{y:.1%} (%{customdata} of %{x})<extra></extra>")
    fig.add_trace(go.Scatter(
        x=totals, y=rates, mode="markers", name="facilities" if unit_label == "facility" else unit_label + "s",
        marker={"color": CATEGORY_COLOURS["potentially_unnecessary"], "size": 9, "opacity": 0.85,
                "symbol": "diamond" if adjusted else "circle", "line": {"color": "white", "width": 1}},
        text=units, customdata=unnecessary, hovertemplate=hover,
    ))
    fig.update_yaxes(tickformat=".0%", rangemode="tozero")
    default = (f"Case-mix-adjusted potentially unnecessary share by {unit_label} (funnel plot)" if adjusted
               else f"Potentially unnecessary share by {unit_label} against volume (funnel plot)")
    return _layout(fig, title or default, x_title or f"spine MRIs per {unit_label}", y_title)


SUPPRESSED_LABEL = "suppressed (1-10, or the cell that would reveal one)"
SUPPRESSED_COLOUR = "#52606d"


def _suppressed_markers(fig, labels: list, positions: list, names: list[str], horizontal: bool = False) -> None:
    """One legend entry and a cross per suppressed cell, at `positions` along the value axis."""
    import plotly.graph_objects as go

    if not labels:
        return
    marker = dict(symbol="x-thin-open", size=11, line={"width": 2, "color": SUPPRESSED_COLOUR},
                  color=SUPPRESSED_COLOUR)
    text = [f"{name}: suppressed" for name in names]
    common = dict(mode="markers", name=SUPPRESSED_LABEL, marker=marker, text=text, cliponaxis=False,
                  hovertemplate="%{text}<extra></extra>", legendrank=2000)
    if horizontal:
        fig.add_trace(go.Scatter(y=labels, x=positions, **common))
    else:
        fig.add_trace(go.Scatter(x=labels, y=positions, **common))


def stacked_categories_figure(labels: list[str], counts: dict[str, list], title: str, x_title: str,
                              horizontal: bool = False):
    """Counts per category stacked for each label; a suppressed cell (None) is a cross at the end of its bar."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for category, values in counts.items():
        bar = dict(name=CATEGORY_LABELS[category], marker_color=CATEGORY_COLOURS[category])
        if horizontal:
            fig.add_trace(go.Bar(y=labels, x=values, orientation="h", **bar))
        else:
            fig.add_trace(go.Bar(x=labels, y=values, **bar))
    hidden = [(label, sum(v[i] or 0 for v in counts.values()), f"{label}, {CATEGORY_LABELS[c]}")
              for i, label in enumerate(labels) for c, v in counts.items() if v[i] is None]
    _suppressed_markers(fig, [h[0] for h in hidden], [h[1] for h in hidden], [h[2] for h in hidden], horizontal)
    fig.update_layout(barmode="stack")
    height = max(360, 28 * len(labels) + 140) if horizontal else 420
    if horizontal:
        fig.update_yaxes(autorange="reversed")
        return _layout(fig, title, "spine MRIs", x_title, height)
    return _layout(fig, title, x_title, "spine MRIs", height)


def rule_set_shift_figure(standard: list[str], acr: list[str], counts: list[list], labels: list[list] | None = None):
    """Heat map of how the same scans are judged by two rule sets; a suppressed cell (None) reads its label
    (`<11` or `withheld` from the page's protection; `suppressed` when no labels are given)."""
    import plotly.graph_objects as go

    labels = labels or [["suppressed"] * len(row) for row in counts]  # what a hidden cell reads
    text = [[label if v is None else f"{v:,}" for v, label in zip(row, names)] for row, names in zip(counts, labels)]
    fig = go.Figure(go.Heatmap(
        z=counts, x=[CATEGORY_LABELS[c] for c in acr], y=[CATEGORY_LABELS[c] for c in standard], text=text,
        colorscale=[[0, "#f0f4f8"], [1, "#0072B2"]], texttemplate="%{text}", showscale=False,
        hovertemplate="standard %{y}, acr-2021 %{x}: %{text} scans<extra></extra>", hoverongaps=True,
    ))
    # Heat-map gaps draw no text, so a suppressed cell is labelled by an annotation of its own.
    for i, row in enumerate(counts):
        for j, v in enumerate(row):
            if v is None:
                fig.add_annotation(x=CATEGORY_LABELS[acr[j]], y=CATEGORY_LABELS[standard[i]], text=text[i][j],
                                   showarrow=False, font={"color": SUPPRESSED_COLOUR})
    fig.update_yaxes(autorange="reversed")
    return _layout(fig, "The same spine MRIs under both rule sets", "acr-2021 verdict", "standard verdict", 420)
