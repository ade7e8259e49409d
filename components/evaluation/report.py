"""The evaluation's visual report: one self-contained HTML file for the KFP UI.

The KFP UI shows an ``HTML`` artifact from its single file, with no way to
fetch side files, so every picture is an inline base64 PNG. The page has the
blessing decision, the metrics (beside the baseline's, with deltas, when there
is one), the confusion matrix, sample images with the true mask and each
model's prediction drawn over them in the shared class palette
(``components.evaluation.visualize``: the same colour is the same class in every run and
tool), and the k test images the candidate scores worst, by file name.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from typing import Any

import jinja2
import numpy as np
from markupsafe import Markup
from PIL import Image

from components.data import schema
from components.evaluation import visualize
from components.evaluation.metrics import confusion_matrix, segmentation_metrics
from components.platform import files

# The shared class colours (visualize); index = class id (pet, background, border).
PALETTE: tuple[tuple[int, int, int], ...] = visualize.BASE_COLOURS
_UNDEFINED = "undefined: zero denominator (a class absent from truth and prediction)"
# Small masks are shown enlarged without smoothing, so class edges stay crisp.
DISPLAY_WIDTH_PX = 192
# How strongly a mask's colours cover the image it is drawn over.
OVERLAY_ALPHA = 0.5


def colorize_mask(mask: np.ndarray, num_classes: int = schema.NUM_CLASSES) -> np.ndarray:
    """Maps a [H, W] (or [H, W, 1]) class-id mask to [H, W, 3] uint8 palette colours.

    Raises:
        ValueError: if the mask is not 2-D, or an id is out of range.
    """
    return visualize.colour_mask(mask, visualize.class_palette(num_classes))


def png_data_uri(pixels: np.ndarray) -> str:
    """Encodes a [H, W, 3] uint8 array as a ``data:image/png;base64,...`` URI."""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _number(value: float | int | None, digits: int = 4) -> Markup:
    if value is None:
        return Markup(f'<span class="na" title="{_UNDEFINED}">n/a</span>')
    if isinstance(value, int):
        return Markup(f"{value:,}")
    return Markup(f"{value:.{digits}f}")


def _image(pixels: np.ndarray, alt: str) -> Markup:
    return Markup(
        f'<img src="{png_data_uri(pixels)}" alt="{html.escape(alt)}" '
        f'width="{DISPLAY_WIDTH_PX}" height="{DISPLAY_WIDTH_PX}">'
    )


def _legend(classes: Sequence[str]) -> Markup:
    palette = visualize.class_palette(len(classes))
    items = "".join(
        f'<span class="swatch" style="background: rgb{tuple(int(c) for c in colour)}"></span>'
        f"{html.escape(name)}&nbsp;&nbsp;"
        for colour, name in zip(palette, classes, strict=True)
    )
    return Markup(f'<p class="legend">{items}</p>')


def _delta(candidate: float | int | None, baseline: float | int | None, digits: int = 4) -> Markup:
    if candidate is None or baseline is None:
        return _number(None)
    delta = float(candidate) - float(baseline)
    style = "better" if delta > 0 else "worse" if delta < 0 else "same"
    return Markup(f'<span class="{style}">{delta:+.{digits}f}</span>')


def _metric_rows(
    candidate: dict[str, Any], baseline: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """Candidate, and with a baseline: baseline and candidate − baseline, row by row."""
    rows = []

    def row(label: str, getter: Any, delta: bool = True) -> None:
        value = getter(candidate)
        cells = [_number(value)]
        if baseline:
            other = getter(baseline)
            cells += [_number(other), _delta(value, other) if delta else ""]
        rows.append({"label": label, "cells": cells})

    row("mean IoU", lambda metrics: metrics["mean_iou"])
    row("pixel accuracy", lambda metrics: metrics["pixel_accuracy"])
    for name in candidate["classes"]:
        for key in ("iou", "precision", "recall"):
            row(
                f"{name} {key}",
                lambda metrics, n=name, k=key: metrics["per_class"].get(n, {}).get(k),
            )
    if candidate.get("mean_boundary_iou") is not None:
        row("mean boundary IoU", lambda metrics: metrics.get("mean_boundary_iou"))
    row("images", lambda metrics: metrics.get("num_images"), delta=False)
    return rows


def _boundary_rows(
    candidate: dict[str, Any], baseline: dict[str, Any] | None
) -> list[dict[str, Any]]:
    per_class = candidate.get("boundary_iou")
    if not per_class:
        return []
    rows = []
    for name, value in per_class.items():
        cells = [_number(value)]
        if baseline:
            other = (baseline.get("boundary_iou") or {}).get(name)
            cells += [_number(other), _delta(value, other)]
        rows.append({"label": name, "cells": cells})
    return rows


def _confusion_rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """Counts with their row share, each cell shaded by the share (darker = larger)."""
    rows = []
    for name, counts in zip(metrics["classes"], metrics["confusion_matrix"], strict=True):
        total = sum(counts)
        cells = []
        for count in counts:
            share = count / total if total else 0.0
            text_colour = "#fff" if share > 0.6 else "#000"
            cells.append(
                {
                    "count": f"{count:,}",
                    "share": f"{share:.1%}" if total else "n/a",
                    "style": f"background: rgba(0, 90, 160, {share:.3f}); color: {text_colour}",
                }
            )
        rows.append({"name": name, "cells": cells})
    return rows


def _image_cells(
    sample: dict[str, Any],
    palette: np.ndarray,
    baseline_predictions: dict[str, tuple[np.ndarray, float | None]] | None,
) -> Markup:
    """The image, then truth, candidate and (with a baseline) baseline drawn over it."""
    name = str(sample["file_name"])
    image = np.asarray(sample["image"])
    masks = [("true mask", sample["true_mask"]), ("candidate", sample["predicted_mask"])]
    if baseline_predictions is not None:
        masks.append(("baseline", baseline_predictions.get(name, (None, None))[0]))
    cells = [f"<td>{_image(image, name + ' image')}</td>"]
    for label, mask in masks:
        if mask is None:
            cells.append("<td>not scored</td>")
        else:
            drawn = visualize.overlay(image, np.asarray(mask), palette, OVERLAY_ALPHA)
            cells.append(f"<td>{_image(drawn, f'{name} {label}')}</td>")
    return Markup("".join(cells))


def _image_iou(sample: dict[str, Any], classes: Sequence[str]) -> tuple[float | None, float | None]:
    """(pixel accuracy, mean IoU) of one image."""
    per_image = segmentation_metrics(
        confusion_matrix(
            np.asarray(sample["true_mask"]), np.asarray(sample["predicted_mask"]), len(classes)
        ),
        classes,
    )
    return per_image["pixel_accuracy"], per_image["mean_iou"]


def _image_header(with_baseline: bool) -> Markup:
    columns = ["image", "true mask", "candidate"] + (["baseline"] if with_baseline else [])
    return Markup("".join(f"<th>{column}</th>" for column in columns))


def _sample_rows(
    samples: Sequence[dict[str, Any]],
    classes: Sequence[str],
    baseline_predictions: dict[str, tuple[np.ndarray, float | None]] | None = None,
) -> list[dict[str, Any]]:
    palette = visualize.class_palette(len(classes))
    rows = []
    for sample in samples:
        name = str(sample["file_name"])
        accuracy, mean_iou = _image_iou(sample, classes)
        caption = Markup("{}<br>pixel accuracy {}, mean IoU {}").format(
            name, _number(accuracy, 3), _number(mean_iou, 3)
        )
        if baseline_predictions is not None and name in baseline_predictions:
            caption += Markup("<br>baseline mean IoU {}").format(
                _number(baseline_predictions[name][1], 3)
            )
        rows.append(
            {"cells": _image_cells(sample, palette, baseline_predictions), "caption": caption}
        )
    return rows


def _ranked_rows(
    items: Sequence[dict[str, Any]],
    classes: Sequence[str],
    baseline_predictions: dict[str, tuple[np.ndarray, float | None]] | None,
    with_change: bool = False,
) -> list[dict[str, Any]]:
    """Images by rank with their IoUs (and the change) and the pictures of each model."""
    palette = visualize.class_palette(len(classes))
    rows = []
    for rank, item in enumerate(items, start=1):
        name = str(item["file_name"])
        ious = [_number(item.get("mean_iou"), 3)]
        if baseline_predictions is not None:
            ious.append(_number(baseline_predictions.get(name, (None, None))[1], 3))
        if with_change:
            ious.append(_delta(item.get("change"), 0.0, digits=3))
        rows.append(
            {
                "rank": rank,
                "name": name,
                "ious": ious,
                "cells": _image_cells(item, palette, baseline_predictions),
            }
        )
    return rows


def interval_bar(
    figure: dict[str, Any],
    *,
    low_limit: float | None = None,
    width: int = 360,
    height: int = 34,
    signed: bool = True,
) -> Markup:
    """An inline SVG of an interval, with no external resources.

    The interval is a bar, the estimate a tick, zero and the limit (e.g. -max_regression)
    vertical lines, on an axis wide enough for all of them.
    """
    estimate, low, high = figure.get("estimate"), figure.get("low"), figure.get("high")
    if estimate is None or low is None or high is None:
        return Markup("")
    marks = [low, high, estimate] + ([0.0] if signed else [])
    if low_limit is not None:
        marks.append(low_limit)
    span = max(marks) - min(marks) or 0.01
    left, right = min(marks) - 0.1 * span, max(marks) + 0.1 * span

    def x(value: float) -> float:
        return 8 + (value - left) / (right - left) * (width - 16)

    colour = "#007a3d" if low_limit is None or low >= low_limit else "#b00020"
    parts = [
        f'<svg class="interval" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="interval {low:+.4f} to {high:+.4f}, estimate {estimate:+.4f}">',
        f'<line x1="8" y1="14" x2="{width - 8}" y2="14" stroke="#ccc"/>',
        f'<rect x="{x(low):.1f}" y="8" width="{max(x(high) - x(low), 1):.1f}" height="12" '
        f'fill="{colour}" fill-opacity="0.35" stroke="{colour}"/>',
        f'<line x1="{x(estimate):.1f}" y1="4" x2="{x(estimate):.1f}" y2="24" '
        f'stroke="{colour}" stroke-width="2"/>',
        f'<text x="{x(low):.1f}" y="32" font-size="9" text-anchor="middle">{low:+.3f}</text>',
        f'<text x="{x(high):.1f}" y="32" font-size="9" text-anchor="middle">{high:+.3f}</text>',
    ]
    if signed:
        parts.append(f'<line x1="{x(0):.1f}" y1="2" x2="{x(0):.1f}" y2="26" stroke="#333"/>')
    if low_limit is not None:
        parts.append(
            f'<line x1="{x(low_limit):.1f}" y1="2" x2="{x(low_limit):.1f}" y2="26" '
            'stroke="#b00020" stroke-dasharray="3,2"/>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def _interval_section(
    intervals: dict[str, Any] | None, max_regression: float | None
) -> dict[str, Any] | None:
    if not intervals:
        return None
    confidence = f"{intervals.get('confidence', 0.95):.0%}"
    difference = intervals.get("difference")
    resamples = f"paired bootstrap over {intervals.get('samples')} resamples of the test images"
    if difference and difference.get("low") is not None:
        limit = -max_regression if max_regression is not None else None
        return {
            "caption": (
                f"Mean IoU candidate − baseline: {difference['estimate']:+.4f}, {confidence} "
                f"interval {difference['low']:+.4f} to {difference['high']:+.4f} ({resamples}). "
                "The bar is the interval, the tick the estimate, the solid line zero"
                + (", the dashed line −max_regression." if limit is not None else ".")
            ),
            "bar": interval_bar(difference, low_limit=limit),
        }
    challenger = intervals.get("challenger") or {}
    if challenger.get("low") is None:
        return None
    return {
        "caption": (
            f"Mean IoU {challenger['estimate']:.4f}, {confidence} interval "
            f"{challenger['low']:.4f} to {challenger['high']:.4f} ({resamples})."
        ),
        "bar": interval_bar(challenger, signed=False),
    }


def _interval_text(figure: dict[str, Any] | None, signed: bool = False) -> str:
    if not figure or figure.get("low") is None:
        return "n/a"
    form = "+.4f" if signed else ".4f"
    return f"{figure['low']:{form}} to {figure['high']:{form}}"


def _slice_rows(
    rows: Sequence[dict[str, Any]], with_baseline: bool, max_regression: float | None
) -> list[dict[str, Any]]:
    shown = []
    limit = -max_regression if max_regression is not None else None
    for row in rows:
        challenger = row["challenger"]
        cells: list[Any] = [_number(challenger.get("estimate")), _interval_text(challenger)]
        if with_baseline:
            production = row.get("production") or {}
            difference = row.get("difference") or {}
            cells += [
                _number(production.get("estimate")),
                _delta(challenger.get("estimate"), production.get("estimate")),
                _interval_text(difference, signed=True),
                interval_bar(difference, low_limit=limit, width=160, height=34),
            ]
        css = "failing" if row.get("failed") else "" if row.get("checked") else "unchecked"
        shown.append(
            {"name": row["name"], "num_images": row["num_images"], "cells": cells, "css": css}
        )
    return shown


_STYLE = """
body { font-family: sans-serif; margin: 1.5em; }
table { border-collapse: collapse; margin-bottom: 1.5em; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
.samples td { text-align: center; vertical-align: middle; }
img { image-rendering: pixelated; }
.swatch { display: inline-block; width: 1em; height: 1em; margin-right: 0.3em;
          vertical-align: middle; border: 1px solid #888; }
.blessed, .better { color: #007a3d; } .rejected, .worse { color: #b00020; }
.na { color: #888; } .worst .name, .changed .name, .slices th { text-align: left; }
tr.failing { background: #fde0e0; } tr.failing th { color: #b00020; }
tr.unchecked { color: #777; } .share { font-size: 85%; }
"""

_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("components.evaluation", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
)


def render_report(
    candidate: dict[str, Any],
    samples: Sequence[dict[str, Any]] = (),
    *,
    baseline: dict[str, Any] | None = None,
    blessed: bool | None = None,
    reasons: Sequence[str] = (),
    title: str = "petseg evaluation",
    worst: Sequence[dict[str, Any]] = (),
    baseline_predictions: dict[str, tuple[np.ndarray, float | None]] | None = None,
    intervals: dict[str, Any] | None = None,
    slices: Sequence[dict[str, Any]] = (),
    changed: dict[str, Sequence[dict[str, Any]]] | None = None,
    max_regression: float | None = None,
    max_slice_regression: float | None = None,
    min_slice_images: int | None = None,
    data_checks: Mapping[str, Any] | None = None,
) -> str:
    """Renders the report (templates/report.html.j2) as one HTML string.

    Args:
        candidate: the candidate's metrics (``segmentation_metrics`` output,
            optionally with num_images, split, model_dir, boundary_iou).
        samples: {file_name, image [S, S, 3] uint8, true_mask, predicted_mask [S, S]}.
        baseline: the baseline's metrics, shown beside the candidate's with deltas, or None.
        blessed: the decision, or None if none was made.
        reasons: why, one line each.
        title: the page heading.
        worst: the images the candidate scores worst, worst first, as samples plus
            ``mean_iou`` (``evaluate.WorstImages``).
        baseline_predictions: {file_name: (predicted mask, mean IoU)} of the baseline on
            the sample, worst and changed images, drawn next to the candidate's; None: no
            baseline.
        intervals: ``bootstrap.paired_bootstrap`` output: drawn as a bar.
        slices: ``slices.slice_table`` rows; failing slices are highlighted.
        changed: {'improved': items, 'worsened': items}: image items (as samples) with
            mean_iou, baseline_mean_iou and change, most changed first.
        max_regression: drawn as a limit on the difference's bar.
        max_slice_regression: the slice rule's margin (None: off), drawn on slice bars.
        min_slice_images: the slice rule's minimum slice size, named in the caption.
        data_checks: the data-check verdicts (``data_checks.run_checks``), or None.
    """
    classes = candidate["classes"]
    if baseline is None:
        baseline_predictions = None
    elif baseline_predictions is None:
        baseline_predictions = {}
    with_baseline = baseline_predictions is not None
    details = [
        f"{key}: {candidate[key]}"
        for key in ("split", "model_dir", "dataset_dir", "evaluation_size")
        if key in candidate
    ]
    if baseline and "model_dir" in baseline:
        details.append(f"baseline model_dir: {baseline['model_dir']}")
    changed_sections = []
    for direction, heading in (
        ("worsened", "The {} images whose mean IoU fell most against the baseline"),
        ("improved", "The {} images whose mean IoU rose most against the baseline"),
    ):
        items = (changed or {}).get(direction) or []
        if items and with_baseline:
            predictions = {
                item["file_name"]: (item.get("baseline_mask"), item.get("baseline_mean_iou"))
                for item in items
            }
            changed_sections.append(
                {
                    "title": heading.format(len(items)),
                    "rows": _ranked_rows(items, classes, predictions, with_change=True),
                }
            )
    slice_rule = ""
    if max_slice_regression is not None and with_baseline:
        slice_rule = (
            f"Highlighted: slices of at least {min_slice_images} images whose mean IoU falls "
            f"more than max_slice_regression {max_slice_regression:.4f} below the baseline's; "
            "grey: too few images to judge."
        )
    confidence = f"{(intervals or {}).get('confidence', 0.95):.0%}"
    return _TEMPLATES.get_template("report.html.j2").render(
        title=title,
        style=Markup(_STYLE),
        blessed=blessed,
        reasons=list(reasons),
        details=details,
        interval=_interval_section(intervals, max_regression if with_baseline else None),
        with_baseline=with_baseline,
        metric_rows=_metric_rows(candidate, baseline),
        slice_rows=_slice_rows(slices, with_baseline, max_slice_regression),
        slice_rule=slice_rule,
        confidence=confidence,
        classes=classes,
        confusion_rows=_confusion_rows(candidate),
        boundary_rows=_boundary_rows(candidate, baseline),
        boundary_band=f"{candidate.get('boundary_band', 0.02):.0%}",
        legend=_legend(classes),
        image_header=_image_header(with_baseline),
        sample_rows=_sample_rows(samples, classes, baseline_predictions),
        worst_rows=_ranked_rows(worst, classes, baseline_predictions),
        changed_sections=changed_sections,
        data_checks=data_checks,
    )


def write_report(path: str, candidate: dict[str, Any], **kwargs: Any) -> None:
    """Renders the report and writes it to ``path`` (local or gs://), creating its folder."""
    files.write_text(path, render_report(candidate, **kwargs))
