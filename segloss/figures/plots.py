"""Plotly figure builders (data in, figure out), PNG overlays and CSV helpers for the app.

Arrays are sent to plotly as float32; no figure here computes anything beyond layout and colour.
"""

from __future__ import annotations

import base64
import io
import textwrap
from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

WELL_CLASSIFIED_COLOR = "rgba(46, 160, 67, 0.10)"
GAMMAS = (0.0, 0.5, 1.0, 2.0, 5.0)  # the focusing values every page shows, each in one colour on every chart
GAMMA_COLORS = dict(zip(GAMMAS, ("#636efa", "#00cc96", "#ab63fa", "#ef553b", "#ffa15a")))
REFERENCE_COLOR = "#8a8f99"  # dashed reference curves (cross-entropy): a grey legible in both themes, no gamma's


def _f32(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


def plain_numbers(fig: go.Figure) -> go.Figure:
    """Axis labels as plain numbers or powers of ten, never SI prefixes ("100µ") on unitless
    values, and full labels between decades on log axes (not the bare digits "2, 5")."""
    fig.update_xaxes(exponentformat="power", minorloglabels="complete")
    fig.update_yaxes(exponentformat="power", minorloglabels="complete")
    return fig


def _decades_only(span: float) -> dict:
    """A log axis spanning ``span`` decades labels only the powers of ten past two decades (between
    them plotly's "2x10, 5, 2, 5x10^-1" crowd the axis), 1, 2 and 5 per decade past about half a
    decade (plotly's every digit stacked "9x10^-1, 8x10^-1, 7x10^-1" into one blur below 1); narrower
    ones keep plotly's labels in between."""
    if span > 2.0:
        return {"dtick": 1}
    return {"dtick": "D2"} if span > 0.6 else {}


LEGEND_COLUMNS = 3  # legend entries per row under a chart with many curves
NARROWEST_PLOT_PX = 270  # the plot area of a page's main chart beside its controls at a 1024 px window, sidebar open


def curves_figure(x: np.ndarray, curves: Mapping[str, np.ndarray], *, x_title: str, y_title: str,
                  log_x: bool = False, log_y: bool = False, well_classified: float | None = None,
                  dashed: Sequence[str] = (), styles: Mapping[str, dict] | None = None, log_floor: float = 1e-7,
                  show_legend: bool = True, height: int = 460, legend_columns: int = LEGEND_COLUMNS,
                  front: Sequence[str] = ()) -> go.Figure:
    """Line chart of several named curves over a shared x.

    Args:
        x: ``(K,)`` abscissa (positive where ``log_x``).
        curves: name -> ``(K,)`` values (non-positive values are dropped on a log y axis).
        well_classified: if given, shade ``x >= well_classified`` as the well-classified region.
        dashed: names drawn dashed, dark grey and in front (reference curves, e.g. cross-entropy).
        styles: optional name -> plotly ``line`` dict (colour, dash), e.g. one colour per gamma.
        log_floor: lowest value a log y axis may show; the axis starts at the data's smallest
            positive value when that is higher.
        height: of the plotting area; a legend of more than four entries goes under the chart
            and the figure grows by its rows, so many curves never squeeze the plot.
        legend_columns: entries per legend row under the chart (fewer for a half-width chart).
        front: names drawn in front of the others, the first frontmost (curves that coincide until
            each stops, like OHEM's thresholds: the one that stops first on top shows every stop).
    """
    fig = go.Figure()
    x32 = _f32(x)
    highest, lowest = 0.0, np.inf
    for name, values in curves.items():
        y = _f32(values)
        if log_y:
            y = np.where(y > 0, y, np.nan).astype(np.float32)
        if np.isfinite(y).any():
            highest = max(highest, float(np.nanmax(y)))
            lowest = min(lowest, float(np.nanmin(np.where(y > 0, y, np.nan))) if (y > 0).any() else np.inf)
        reference = {"dash": "dash", "color": REFERENCE_COLOR} if name in dashed else {"dash": "solid"}
        line = {**reference, "width": 2, **(styles or {}).get(name, {})}
        # dashed reference curves in front of a curve that coincides (focal at gamma = 0 on CE)
        layer = len(front) - list(front).index(name) if name in front else 0
        fig.add_trace(go.Scatter(x=x32, y=y, mode="lines", name=name, line=line,
                                 zorder=len(front) + 1 if name in dashed else layer))
    x_low, x_high = float(np.min(x)), float(np.max(x))
    if well_classified is not None:
        # on a log axis, shapes and annotations are placed in log10 units
        x0, x1 = (np.log10(well_classified), np.log10(x_high)) if log_x else (well_classified, x_high)
        fig.add_vrect(x0=x0, x1=x1, fillcolor=WELL_CLASSIFIED_COLOR, line_width=0,  # label ends at the axis' end
                      annotation_text="well-classified", annotation_position="top right", annotation_xanchor="right")
    longest = max(map(len, curves), default=0)
    fig.update_layout(**legend_layout(height, len(curves) if show_legend else 1, legend_columns, longest=longest),
                      hovermode="x unified", showlegend=show_legend)
    if log_x:
        fig.update_xaxes(title=x_title, type="log", range=[np.log10(x_low), np.log10(x_high)],
                         **_decades_only(np.log10(x_high) - np.log10(x_low)))
    else:  # a fixed range: autorange would make room for the annotation's text on a narrow chart
        fig.update_xaxes(title=x_title, type="linear", range=[x_low, x_high])
    if log_y and highest > log_floor:
        low = max(log_floor, lowest) if np.isfinite(lowest) else log_floor
        fig.update_yaxes(title=y_title, type="log", range=[np.log10(low) - 0.2, np.log10(highest) + 0.3],
                         **_decades_only(np.log10(highest) - np.log10(low)))
    else:
        fig.update_yaxes(title=y_title, type="log" if log_y else "linear")
    return plain_numbers(fig)


def heatmap_figure(x: np.ndarray, y: np.ndarray, z: np.ndarray, *, x_title: str, y_title: str,
                   color_title: str, log_color: bool = True, log_floor: float = 1e-6,
                   height: int = 480) -> go.Figure:
    """Heatmap of ``z`` ``(len(y), len(x))``; ``log_color`` shows ``log10 max(z, log_floor)`` (hover shows ``z``)."""
    z32 = _f32(z)
    shown = np.log10(np.maximum(z32, np.float32(log_floor))) if log_color else z32
    fig = go.Figure(go.Heatmap(
        x=_f32(x), y=_f32(y), z=shown.astype(np.float32), customdata=z32, colorscale="Viridis",
        colorbar={"title": f"log10 {color_title}" if log_color else color_title},
        hovertemplate=f"{x_title}=%{{x:.4f}}<br>{y_title}=%{{y:.3f}}<br>{color_title}=%{{customdata:.4g}}<extra></extra>",
    ))
    fig.update_layout(height=height, margin={"l": 10, "r": 10, "t": 30, "b": 10})
    fig.update_xaxes(title=x_title)
    fig.update_yaxes(title=y_title)
    return plain_numbers(fig)


def table_csv(columns: Mapping[str, Sequence]) -> str:
    """Columns of equal length as CSV text (header row first), numbers with 8 significant digits."""
    names = list(columns)
    arrays = [np.asarray(columns[name]) for name in names]
    lengths = {len(a) for a in arrays}
    if len(lengths) > 1:
        raise ValueError(f"columns must have equal lengths, got { {n: len(a) for n, a in zip(names, arrays)} }")
    out = io.StringIO()
    out.write(",".join(f'"{n}"' if "," in n else n for n in names) + "\n")
    for row in zip(*arrays):
        out.write(",".join(f"{v:.8g}" if isinstance(v, (float, np.floating)) else str(v) for v in row) + "\n")
    return out.getvalue()


# --------------------------------------------------------------------------- per-pixel loss maps
LOG_FLOOR = 1e-6


def _rgb_scale(name: str, stops: int = 11) -> list[list]:
    """A named plotly colorscale as ``[[position, "rgb(r, g, b)"], ...]``.

    Streamlit's plotly theme uses hex colours ``#000001``..``#0000NN`` as placeholders that its
    frontend swaps for theme colours, and Inferno starts at ``#000004``: spelt as hex, the lowest
    losses would be drawn pink. rgb() strings are left alone.
    """
    from plotly.colors import sample_colorscale

    positions = np.linspace(0.0, 1.0, stops).tolist()
    return [[p, c] for p, c in zip(positions, sample_colorscale(name, positions, colortype="rgb"))]


LOSS_COLORSCALE = _rgb_scale("Inferno")


def color_range(maps: Sequence[np.ndarray], *, log_color: bool = False, quantile: float = 0.99,
                floor: float = LOG_FLOOR) -> tuple[float, float]:
    """``(zmin, zmax)`` covering ``maps`` (NaN ignored) up to ``quantile``, in log10 if ``log_color``.

    A top quantile rather than the maximum keeps a few saturated pixels from washing the rest out.
    """
    values = np.concatenate([np.asarray(m, np.float32).ravel() for m in maps])
    values = values[np.isfinite(values)]
    if values.size == 0:
        return (np.log10(floor), 0.0) if log_color else (0.0, 1.0)
    high = float(np.quantile(values, quantile))
    if not log_color:
        return 0.0, max(high, 1e-12)
    low = float(np.quantile(values, 1 - quantile))
    low, high = np.log10(max(low, floor)), np.log10(max(high, floor))
    return (low, high) if high > low else (low, low + 1.0)


def shown_values(values: np.ndarray, log_color: bool, floor: float = LOG_FLOOR) -> np.ndarray:
    """The values a loss heatmap colours: the map, or ``log10 max(map, floor)`` (NaN kept)."""
    values = np.asarray(values, np.float32)
    return np.log10(np.maximum(values, np.float32(floor))) if log_color else values


def _png_uri(image_u8: np.ndarray) -> str:
    from PIL import Image  # pillow is a core dependency

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image_u8)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def pixel_hover_text(labels: np.ndarray, top_classes: np.ndarray, class_names: Sequence[str],
                     ignore_index: int = 255) -> np.ndarray:
    """Per pixel ``"road<br>top-3: road, sidewalk, car"`` (label, then the top-k classes).

    ``labels`` ``(h, w)``, ``top_classes`` ``(k, h, w)`` (k = 0: the label only). Kept short and
    ASCII: plotly's JSON escapes ``<``, ``>`` and non-ASCII characters to 6 bytes each, and this is
    sent once per drawn pixel. Each distinct combination is formatted once, then looked up.
    """
    labels = np.asarray(labels, np.int64)
    top = np.asarray(top_classes, np.int64)
    stack = np.concatenate([labels[None], top]).reshape(top.shape[0] + 1, -1)
    combos, inverse = np.unique(stack, axis=1, return_inverse=True)

    def name(k: int) -> str:
        return "ignored" if k == ignore_index else (class_names[k] if 0 <= k < len(class_names) else f"class {k}")

    texts = np.array([name(c[0]) + (f"<br>top-{len(c) - 1}: {', '.join(map(name, c[1:]))}" if len(c) > 1 else "")
                      for c in combos.T.tolist()], dtype=object)
    return texts[np.ravel(inverse)].reshape(labels.shape)


def _position(factor: int) -> dict:
    """Blocks of ``factor`` px drawn at their centres, in the full-resolution pixel coordinates."""
    return {"x0": (factor - 1) / 2, "dx": factor, "y0": (factor - 1) / 2, "dy": factor}


def panel_columns(count: int) -> int:
    """Panels per row of :func:`loss_panels_figure`: all of up to three, 2 x 2 for four, else three."""
    return count if count <= 3 else (2 if count == 4 else 3)


def loss_panels_figure(image: np.ndarray, panels: Mapping[str, np.ndarray], *, factor: int,
                       hover_text: np.ndarray, top_probs: np.ndarray, opacity: float = 0.6,
                       shared_scale: bool = True, log_color: bool = False, height: int | None = None,
                       unit: str = "loss") -> go.Figure:
    """Loss (or gradient) heatmaps, each over the image, zoom linked; hover shows every map.

    Up to three side by side; four as 2 x 2 and more three to a row (four in a row were under
    100 px wide each on a 1024 px projector).

    Args:
        image: uint8 ``(h, w, 3)`` background, same grid as the maps.
        panels: title -> float32 ``(h, w)`` per-pixel loss (NaN: drawn transparent).
        factor: full-resolution pixels per displayed pixel (axes and hover use full coordinates).
        hover_text: ``(h, w)`` strings from :func:`pixel_hover_text`.
        top_probs: float32 ``(k, h, w)`` probabilities of the classes named in ``hover_text``.
        opacity: heatmap opacity over the image.
        shared_scale: one colour scale for all panels, else one per panel.
        log_color: colour by log10 of the loss.
        height: figure height in px; default: square-ish panels on a ~1000 px wide chart.
        unit: what the maps hold, for the colour bar (e.g. ``"loss"``, ``"|dL/dz|"``).
    """
    from plotly.subplots import make_subplots

    titles = list(panels)
    probs = np.moveaxis(np.asarray(top_probs, np.float32), 0, -1)
    k = probs.shape[-1]
    custom = np.concatenate([probs, np.stack([panels[t] for t in titles], axis=-1)], axis=-1).astype(np.float32)
    block = f" (block of {factor}x{factor} px: values are its mean, label and p its centre)" if factor > 1 else ""
    template = ("x %{x}, y %{y}" + block + f"<br>label: %{{text}}<br>p(top-{k}): "
                + ", ".join(f"%{{customdata[{i}]:.3f}}" for i in range(k))
                + "".join(f"<br>{t}: %{{customdata[{k + j}]:.4g}}" for j, t in enumerate(titles)) + "<extra></extra>")
    cols = panel_columns(len(titles))
    rows = -(-len(titles) // cols)
    gap = 0.0 if rows == 1 else (0.16 if not shared_scale else 0.08) / (rows - 1)  # room for titles (and bars)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles, horizontal_spacing=0.03, vertical_spacing=gap)
    shown = {t: shown_values(panels[t], log_color) for t in titles}
    unit = f"log10 {unit}" if log_color else unit
    uri = _png_uri(image)
    shared = color_range(list(panels.values()), log_color=log_color) if shared_scale else None
    for index, title in enumerate(titles):
        row, j = index // cols + 1, index % cols + 1
        low, high = shared or color_range([panels[title]], log_color=log_color)
        cell = fig.get_subplot(row, j)
        domain = cell.xaxis.domain
        bar = ({"title": {"text": unit}} if shared_scale else
               {"title": {"text": unit, "side": "bottom"}, "orientation": "h", "x": (domain[0] + domain[1]) / 2,
                "len": domain[1] - domain[0], "y": cell.yaxis.domain[0] - 0.02 / rows, "yanchor": "top",
                "thickness": 12})
        # Each trace carries its own scale (not a layout coloraxis, which Streamlit's plotly build
        # draws with a washed-out low end); with a shared scale only the first shows its bar.
        fig.add_trace(go.Image(source=uri, hoverinfo="skip", **_position(factor)), row=row, col=j)
        fig.add_trace(go.Heatmap(z=shown[title], customdata=custom, text=hover_text, hovertemplate=template,
                                 opacity=opacity, colorscale=LOSS_COLORSCALE, zmin=low, zmax=high,
                                 showscale=not shared_scale or index == 0, colorbar=bar, zsmooth=False, name=title,
                                 **_position(factor)), row=row, col=j)
    fig.update_xaxes(matches="x", showticklabels=False, ticks="", showgrid=False)  # pixels: no numbers, no bare tick marks
    fig.update_yaxes(matches="y", showticklabels=False, ticks="", showgrid=False)
    bottom = 10 if shared_scale else 70
    if height is None:
        aspect = image.shape[0] / image.shape[1]
        # one row: panels on a ~1000 px chart, as before; a grid: on ~700 px, so that on a wide page the
        # panels fill their rows' height (titles stay on them) and on a 1024 px one little height is left over
        width = 1000 if rows == 1 else 700
        height = int(np.clip(rows * (width / cols * aspect + (50 if shared_scale or rows == 1 else 90)) + bottom,
                             240, 1400))
    fig.update_layout(height=height, margin={"l": 10, "r": 10, "t": 40, "b": bottom})
    return fig


def comparison_figure(image: np.ndarray, values: np.ndarray, *, factor: int, title: str, hover_text: np.ndarray,
                      first: tuple[str, np.ndarray], second: tuple[str, np.ndarray], opacity: float = 0.7,
                      height: int = 520) -> go.Figure:
    """A diverging map (difference or log ratio of two losses) over the image, 0 in the middle.

    Args:
        image: uint8 ``(h, w, 3)``; values: float32 ``(h, w)``.
        first, second: (title, ``(h, w)`` map) of the two losses compared, shown on hover.
    """
    values = np.asarray(values, np.float32)
    finite = np.abs(values[np.isfinite(values)])
    bound = float(np.quantile(finite, 0.99)) if finite.size else 1.0
    custom = np.stack([first[1], second[1]], axis=-1).astype(np.float32)
    template = (f"x %{{x}}, y %{{y}}<br>label: %{{text}}<br>{first[0]}: %{{customdata[0]:.4g}}<br>"
                f"{second[0]}: %{{customdata[1]:.4g}}<br>{title}: %{{z:.4g}}<extra></extra>")
    fig = go.Figure([go.Image(source=_png_uri(image), hoverinfo="skip", **_position(factor)),
                     go.Heatmap(z=values, customdata=custom, text=hover_text, hovertemplate=template,
                                colorscale="RdBu_r", zmid=0.0, zmin=-max(bound, 1e-12), zmax=max(bound, 1e-12),
                                opacity=opacity, zsmooth=False, colorbar={"title": title}, **_position(factor))])
    fig.update_xaxes(showticklabels=False, ticks="", showgrid=False)
    fig.update_yaxes(showticklabels=False, ticks="", showgrid=False)
    fig.update_layout(height=height, margin={"l": 10, "r": 10, "t": 30, "b": 10})
    return fig


def _lut(colorscale: str = "Inferno") -> np.ndarray:
    from plotly.colors import sample_colorscale, unlabel_rgb

    colours = sample_colorscale(colorscale, np.linspace(0.0, 1.0, 256).tolist())
    return np.asarray([unlabel_rgb(c) for c in colours], dtype=np.float32)


def panel_heading(title: str, unit: str, log_color: bool, low: float, high: float) -> str:
    """A PNG panel's title with what its colours span, e.g. ``"Soft Dice  (colour: |dL/dz| 0 to 0.02)"``."""
    return f"{title}  (colour: {'log10 ' + unit if log_color else unit} {low:.3g} to {high:.3g})"


def heatmaps_png(image: np.ndarray, maps: Mapping[str, np.ndarray], *, opacity: float = 0.6,
                 shared_scale: bool = True, log_color: bool = False, gap: int = 8, unit: str = "loss") -> bytes:
    """The heatmaps over the image, side by side, titled, as PNG bytes (full resolution).

    Args:
        image: float ``(H, W, 3)`` in [0, 1] or uint8.
        maps: title -> ``(H, W)`` loss; coloured like :func:`loss_panels_figure` (NaN: image only).
        unit: what the maps hold (``"loss"``, ``"|dL/dz|"``), named in each panel's title.
    """
    from PIL import Image, ImageDraw, ImageFont

    base = np.asarray(image)
    base = base.astype(np.float32) / 255.0 if base.dtype == np.uint8 else np.clip(base.astype(np.float32), 0, 1)
    lut = _lut()
    titles = list(maps)
    h, w = base.shape[:2]
    header = max(16, h // 24)
    sheet = Image.new("RGB", (len(titles) * w + (len(titles) - 1) * gap, h + header + 4), "white")
    font = ImageFont.load_default(size=header - 2)
    for j, title in enumerate(titles):
        low, high = color_range([maps[title]] if not shared_scale else list(maps.values()), log_color=log_color)
        z = shown_values(maps[title], log_color)
        index = np.clip(np.nan_to_num((z - low) / (high - low), nan=0.0), 0, 1) * 255
        alpha = np.where(np.isfinite(z), opacity, 0.0)[..., None].astype(np.float32)
        blended = (1 - alpha) * base + alpha * lut[index.astype(np.int64)] / 255.0
        x = j * (w + gap)
        sheet.paste(Image.fromarray((blended * 255).round().astype(np.uint8)), (x, header + 4))
        ImageDraw.Draw(sheet).text((x + 2, 1), panel_heading(title, unit, log_color, low, high), fill="black", font=font)
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    return buffer.getvalue()


def legend_layout(height: int, entries: int = 1, columns: int = LEGEND_COLUMNS, fixed: bool = False,
                  longest: int = 0, extra_rows: int = 0) -> dict:
    """Height, margins and legend: up to four entries in a row above the plot; more go under it,
    flowing as wide as the chart is (no fixed entry width: fixed columns clip or overlap long names
    on a narrow chart, e.g. at a 1024 px window), and the figure grows by about ``entries / columns``
    rows (fewer ``columns`` for a narrow chart) instead of squeezing the plot.

    ``fixed``: exactly ``columns`` entries a row, each ``1 / columns`` of the chart's width, so the rows
    made room for are the rows drawn, however narrow the chart (flowing, a chart narrower than
    expected took more rows than it had room for, and plotly cut the last entries off: the rare
    classes of a half-width recall chart at a 1280 px window). For names that fit that width.

    ``longest``: characters of the longest name; a flowing legend then makes room for as many rows
    as it takes in a plot :data:`NARROWEST_PLOT_PX` wide (plotly wraps a legend at the plot's width;
    about 6.5 px a character and 40 px of line sample), not fewer: on a wider chart some rows stay
    blank at the foot instead of entries cut off on a narrow one. ``extra_rows``: more room, e.g.
    for names broken over two lines (:func:`legend_name`)."""
    if entries <= 4:
        return {"height": height, "margin": {"l": 10, "r": 10, "t": 30, "b": 10}, "uirevision": "keep",
                "legend": {"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0}}
    if longest and not fixed:
        columns = max(1, min(columns, int(NARROWEST_PLOT_PX // (40 + 6.5 * longest))))
    rows = -(-entries // columns) + extra_rows
    # the legend's top 50 px under the plot, below the x axis' ticks and title, in pixels of the whole figure
    # (placed by the plot's height, it ran into the title of a short chart); rows it does not fill stay blank
    # at the foot, not between chart and legend
    total = height + 22 * rows + 40
    legend = {"orientation": "h", "yref": "container", "yanchor": "top", "y": (22 * rows + 10) / total, "x": 0}
    if fixed:
        legend.update(entrywidth=1.0 / columns, entrywidthmode="fraction")
    return {"height": total, "margin": {"l": 10, "r": 10, "t": 20, "b": 50 + 22 * rows}, "uirevision": "keep",
            "legend": legend}


LEGEND_LINE = 24  # characters of a legend name's line in a fixed-width legend (two a row fit a 400 px plot)


def legend_name(name: str, width: int = LEGEND_LINE) -> str:
    """``name`` broken into lines of at most ``width`` characters at spaces (plotly's ``<br>``): in a
    legend of fixed-width entries a long name ran into its neighbour or past the chart's edge
    ("Generalized Dice + boundary (schedul" at a 1024 px window)."""
    return "<br>".join(textwrap.wrap(name, width, break_long_words=False, break_on_hyphens=False)) or name


AXIS_NUMBERS = {"exponentformat": "power", "minorloglabels": "complete"}  # see plain_numbers


def training_curves_figure(x: np.ndarray, curves: Mapping[str, np.ndarray], *, x_title: str = "step",
                           y_title: str, colors: Mapping[str, str] | None = None, y_range: Sequence[float] | None = None,
                           log_y: bool = False, height: int = 300,
                           legend_columns: int = LEGEND_COLUMNS, legend_fixed: bool = False) -> go.Figure:
    """Lines of several named series over training steps (markers too while there are few points).

    Built from one dict in a single ``go.Figure`` call (validated once, several times faster than
    ``add_trace``/``update_*``): a live view rebuilds it twice a second.

    Args:
        x: ``(K,)`` steps shared by every series.
        curves: name -> ``(K,)`` values; NaN leaves a gap (e.g. a class absent from the batch).
        colors: optional name -> CSS colour (e.g. each class in its palette colour).
        y_range: fixed ``[low, high]`` for the y axis (e.g. ``[0, 1]`` for IoU and recall).
        log_y: logarithmic y axis.
        legend_columns: legend entries a row holds (2 for a chart in half the page's width).
        legend_fixed: exactly ``legend_columns`` a row (short names; see :func:`legend_layout`).
    """
    x32 = _f32(x)
    mode = "lines+markers" if len(x32) <= 40 else "lines"
    traces = [{"type": "scatter", "x": x32, "y": _f32(values), "mode": mode, "name": name, "marker": {"size": 4},
               "line": {"width": 2, **({"color": colors[name]} if colors and name in colors else {})}}
              for name, values in curves.items()]
    y_axis = {"title": {"text": y_title}, "type": "log" if log_y else "linear", **AXIS_NUMBERS}
    if log_y:
        y_axis["dtick"] = "D2"  # ticks at 1, 2 and 5 per decade, each labelled in full (0.2, 0.5, 1)
    if y_range is not None:
        y_axis["range"] = list(y_range)
    x_axis = {"title": {"text": x_title}, **AXIS_NUMBERS}
    if len(x32) and float(x32.max() - x32.min()) < 5:
        x_axis["dtick"] = 1  # steps are whole: after one or two, plotly ticked 0.5 and 1.5
    layout = {**legend_layout(height, len(traces), legend_columns, legend_fixed), "hovermode": "x unified",
              "xaxis": x_axis,
              "yaxis": y_axis, "showlegend": True}  # even for one series: the legend names it
    return go.Figure({"data": traces, "layout": layout})


def class_share_figure(class_names: Sequence[str], shares: Mapping[str, np.ndarray], *,
                       colors: Mapping[str, str] | None = None, height: int = 320) -> go.Figure:
    """Grouped bars per class on a log axis: e.g. share of pixels vs. share of each loss's total.

    Args:
        class_names: C names (x axis).
        shares: series name -> ``(C,)`` fractions in [0, 1] (zeros are left out on the log axis).
        colors: optional series name -> CSS colour.
    """
    traces = []
    for name, values in shares.items():
        v = _f32(values)
        trace = {"type": "bar", "x": list(class_names), "y": np.where(v > 0, v, np.nan).astype(np.float32),
                 "name": name, "customdata": v * np.float32(100),
                 "hovertemplate": "%{x}: %{customdata:.2f}%<extra>" + name + "</extra>"}
        if colors and name in colors:
            trace["marker"] = {"color": colors[name]}
        traces.append(trace)
    layout = {**legend_layout(height, len(shares)), "barmode": "group",
              "yaxis": {"title": {"text": "share (log scale)"}, "type": "log", "tickformat": ".1%"}}
    return go.Figure({"data": traces, "layout": layout})


def ratio_bars_figure(names: Sequence[str], ratios: Sequence[float], groups: Sequence[str], *,
                      x_title: str = "value / segloss's value of the same loss (log scale)",
                      height: int | None = None) -> go.Figure:
    """Horizontal bars of ratios on a log axis, top to bottom, one colour per group, a dashed line at 1.

    Args:
        names: K bar labels (unique).
        ratios: ``(K,)`` ratios; non-positive or NaN ones are left out (a log axis cannot show them).
        groups: K group names (legend and colour).
        height: pixels; None: from the number of bars.
    """
    r = _f32(ratios)
    fig = go.Figure()
    for group in dict.fromkeys(groups):
        idx = [i for i, g in enumerate(groups) if g == group]
        shown = np.where(r[idx] > 0, r[idx], np.nan).astype(np.float32)
        fig.add_trace(go.Bar(y=[names[i] for i in idx], x=shown, orientation="h", name=group,
                             text=[f"{v:.3g}×" for v in r[idx]], textposition="outside", cliponaxis=False,
                             hovertemplate="%{y}: %{x:.4g}×<extra>" + group + "</extra>"))
    fig.add_vline(x=1.0, line_dash="dash", line_color="grey")
    fig.update_layout(height=height or 90 + 26 * len(names), barmode="relative", bargap=0.25,
                      margin={"l": 10, "r": 40, "t": 30, "b": 10},
                      legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0})
    finite = r[np.isfinite(r) & (r > 0)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (1.0, 1.0)
    ticks = [m * 10.0 ** e for e in range(-6, 7) for m in (1, 2, 5) if low / 2 <= m * 10.0 ** e <= high * 2]
    fig.update_xaxes(title=x_title, type="log", tickvals=ticks, ticktext=[f"{t:g}×" for t in ticks])
    fig.update_yaxes(autorange="reversed", categoryorder="array", categoryarray=list(names))
    return fig
