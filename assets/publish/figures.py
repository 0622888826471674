"""Plotly figures of the dashboards, built from small aggregated frames.

One colour per category everywhere (Okabe-Ito palette, safe for colour-blind readers); every axis labelled with
its unit; suppressed cells (1-10) are left out of the charts and said so in the notes.
"""

from __future__ import annotations

from assets.publish.statistics import Z_95, Z_998, funnel_limits, p_chart

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


def p_chart_figure(months: list[str], unnecessary: list[int], spine: list[int], rule_set: str):
    """Monthly share of potentially unnecessary spine MRIs with p-chart control limits and special causes."""
    import plotly.graph_objects as go

    chart = p_chart(unnecessary, spine)
    pts = chart["points"]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=months, y=[p["upper"] for p in pts], name="upper control limit (3σ)",
                             line={"color": "#7b8794", "dash": "dash", "shape": "hv"}))
    fig.add_trace(go.Scatter(x=months, y=[p["lower"] for p in pts], name="lower control limit (3σ)",
                             line={"color": "#7b8794", "dash": "dash", "shape": "hv"}))
    fig.add_trace(go.Scatter(x=months, y=[chart["centre"]] * len(months), name=f"centre line {chart['centre']:.1%}",
                             line={"color": DARK, "width": 1}))
    fig.add_trace(go.Scatter(
        x=months, y=[p["p"] for p in pts], name="monthly share", mode="lines+markers",
        line={"color": CATEGORY_COLOURS["potentially_unnecessary"]},
        customdata=[[u, n] for u, n in zip(unnecessary, spine)],
        hovertemplate="%{x}: %{y:.1%} (%{customdata[0]} of %{customdata[1]} spine MRIs)<extra></extra>",
    ))
    special = [i for i, p in enumerate(pts) if p["beyond_limits"] or p["run"]]
    if special:
        fig.add_trace(go.Scatter(
            x=[months[i] for i in special], y=[pts[i]["p"] for i in special], mode="markers",
            name="special cause (beyond a limit, or 8 in a row on one side)",
            marker={"symbol": "diamond-open", "size": 14, "color": DARK, "line": {"width": 2}},
        ))
    fig.update_yaxes(tickformat=".0%", rangemode="tozero")
    return _layout(fig, f"Potentially unnecessary spine MRIs per month ({rule_set} rule set), p-chart",
                   "month of scan", "share of spine MRIs"), chart


def funnel_figure(units: list[str], unnecessary: list[int], totals: list[int], unit_label: str, centre: float):
    """Funnel plot: each unit's rate against its volume, with 95% and 99.8% limits around the overall rate."""
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
    fig.add_trace(go.Scatter(x=[0, top * 1.05], y=[centre, centre], name=f"overall {centre:.1%}",
                             line={"color": DARK, "width": 1}))
    rates = [u / t for u, t in zip(unnecessary, totals)]
    fig.add_trace(go.Scatter(
        x=totals, y=rates, mode="markers", name="facilities" if unit_label == "facility" else unit_label + "s",
        marker={"color": CATEGORY_COLOURS["potentially_unnecessary"], "size": 9, "opacity": 0.85,
                "line": {"color": "white", "width": 1}},
        text=units, customdata=unnecessary,
        hovertemplate="%{text}: %{y:.1%} (%{customdata} of %{x} spine MRIs)<extra></extra>",
    ))
    fig.update_yaxes(tickformat=".0%", rangemode="tozero")
    return _layout(fig, f"Potentially unnecessary share by {unit_label} against volume (funnel plot)",
                   f"spine MRIs per {unit_label}", "share potentially unnecessary")


def stacked_categories_figure(labels: list[str], counts: dict[str, list], title: str, x_title: str,
                              horizontal: bool = False):
    """Counts per category stacked for each label (suppressed cells are missing bars)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for category, values in counts.items():
        bar = dict(name=CATEGORY_LABELS[category], marker_color=CATEGORY_COLOURS[category])
        if horizontal:
            fig.add_trace(go.Bar(y=labels, x=values, orientation="h", **bar))
        else:
            fig.add_trace(go.Bar(x=labels, y=values, **bar))
    fig.update_layout(barmode="stack")
    height = max(360, 28 * len(labels) + 140) if horizontal else 420
    if horizontal:
        fig.update_yaxes(autorange="reversed")
        return _layout(fig, title, "spine MRIs", x_title, height)
    return _layout(fig, title, x_title, "spine MRIs", height)


def share_bar_figure(labels: list[str], shares: list[float | None], totals: list, title: str, x_title: str):
    import plotly.graph_objects as go

    fig = go.Figure(go.Bar(
        y=labels, x=shares, orientation="h", marker_color=CATEGORY_COLOURS["potentially_unnecessary"],
        customdata=totals, hovertemplate="%{y}: %{x:.1%} of %{customdata} spine MRIs<extra></extra>",
    ))
    fig.update_xaxes(tickformat=".0%", rangemode="tozero")
    fig.update_yaxes(autorange="reversed")
    return _layout(fig, title, "share potentially unnecessary", x_title, max(320, 30 * len(labels) + 140))


def histogram_by_category_figure(values: dict[str, dict[int, int]], title: str, x_title: str):
    """Counts per day bin for each category, drawn as overlaid bars (bins are aggregated in SQL)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for category, bins in values.items():
        days = sorted(bins)
        fig.add_trace(go.Bar(x=days, y=[bins[d] for d in days], name=CATEGORY_LABELS[category],
                             marker_color=CATEGORY_COLOURS[category], opacity=0.7))
    fig.update_layout(barmode="overlay", bargap=0.05)
    return _layout(fig, title, x_title, "spine MRIs")


def rule_set_shift_figure(standard: list[str], acr: list[str], counts: list[list]):
    """Heat map of how the same scans are judged by two rule sets (suppressed cells blank)."""
    import plotly.graph_objects as go

    fig = go.Figure(go.Heatmap(
        z=counts, x=[CATEGORY_LABELS[c] for c in acr], y=[CATEGORY_LABELS[c] for c in standard],
        colorscale=[[0, "#f0f4f8"], [1, "#0072B2"]], texttemplate="%{z}", showscale=False,
        hovertemplate="standard %{y}, acr-2021 %{x}: %{z} scans<extra></extra>",
    ))
    fig.update_yaxes(autorange="reversed")
    return _layout(fig, "The same spine MRIs under both rule sets", "acr-2021 verdict", "standard verdict", 420)
