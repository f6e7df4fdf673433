"""Plot nodes of the ``monitoring`` pipeline: plotly figures, previewable in kedro-viz.

plotly is imported by the nodes that use it (see ``lazy_types``).
"""

from __future__ import annotations

from typing import Any

from predictive_maintenance.lazy_types import Figure


def plot_drift_scores(drift_scores: dict[str, Any]) -> Figure:
    """PSI and KS statistic per reading, with their thresholds; drifted readings in red."""
    import plotly.graph_objects as go  # noqa: PLC0415
    from plotly.subplots import make_subplots  # noqa: PLC0415

    features = [feature for feature in drift_scores["features"] if feature.get("scored")]
    names = [feature["name"] for feature in features]
    colours = ["crimson" if feature["drifted"] else "steelblue" for feature in features]
    thresholds = drift_scores["thresholds"]
    figure = make_subplots(
        rows=1, cols=2, subplot_titles=("PSI", "KS statistic (numeric readings)")
    )
    figure.add_trace(
        go.Bar(x=names, y=[f["psi"] for f in features], marker_color=colours, name="PSI"),
        row=1,
        col=1,
    )
    numeric = [feature for feature in features if "ks_statistic" in feature]
    figure.add_trace(
        go.Bar(
            x=[f["name"] for f in numeric],
            y=[f["ks_statistic"] for f in numeric],
            marker_color=["crimson" if f["drifted"] else "steelblue" for f in numeric],
            customdata=[f["ks_p_value"] for f in numeric],
            hovertemplate="%{x}: D = %{y:.3f}, p = %{customdata:.2g}<extra></extra>",
            name="KS statistic",
        ),
        row=1,
        col=2,
    )
    figure.add_hline(y=thresholds["psi"], line_dash="dash", row=1, col=1)
    figure.add_hline(y=thresholds["ks_statistic"], line_dash="dash", row=1, col=2)
    title = (
        f"Drift of {drift_scores['rows']} captured readings from the baseline"
        if drift_scores["scored"]
        else f"Drift not scored: {drift_scores.get('reason', '')}"
    )
    return figure.update_layout(title=title, showlegend=False)


def plot_distributions(drift_scores: dict[str, Any]) -> Figure:
    """Per reading, the baseline's and the captured readings' shares of the PSI bins (the
    baseline's deciles; categories for ``type``)."""
    import plotly.graph_objects as go  # noqa: PLC0415
    from plotly.subplots import make_subplots  # noqa: PLC0415

    features = [feature for feature in drift_scores["features"] if feature.get("scored")]
    columns = 3
    rows = max(1, -(-len(features) // columns))
    figure = make_subplots(
        rows=rows,
        cols=columns,
        subplot_titles=[
            f"{f['name']} (PSI {f['psi']:.3f}{', drifted' if f['drifted'] else ''})"
            for f in features
        ],
    )
    for position, feature in enumerate(features):
        row, col = position // columns + 1, position % columns + 1
        if "categories" in feature:
            labels = feature["categories"]["values"]
            shares = feature["categories"]
        else:
            labels = _bin_labels(feature["bins"]["upper_edges"])
            shares = feature["bins"]
        for side, colour in (("baseline", "grey"), ("current", "darkorange")):
            figure.add_trace(
                go.Bar(
                    x=labels,
                    y=shares[f"{side}_shares"],
                    name=side,
                    marker_color=colour,
                    legendgroup=side,
                    showlegend=position == 0,
                ),
                row=row,
                col=col,
            )
    return figure.update_layout(
        title="Baseline vs captured readings: share of each bin", barmode="group"
    )


def _bin_labels(upper_edges: list[float | None]) -> list[str]:
    labels, lower = [], None
    for upper in upper_edges:
        if lower is None and upper is None:
            labels.append("all")
        elif lower is None:
            labels.append(f"≤ {upper:.4g}")
        elif upper is None:
            labels.append(f"> {lower:.4g}")
        else:
            labels.append(f"{lower:.4g}-{upper:.4g}")
        lower = upper
    return labels
