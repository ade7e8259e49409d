"""The evaluation's visual report: one self-contained HTML file for the KFP UI.

The KFP UI shows an ``HTML`` artifact from its single file, with no way to
fetch side files, so every picture is an inline base64 PNG. The page has the
blessing decision, the metrics (beside the baseline's, with deltas, when there
is one), the confusion matrix, sample images with the true mask and each
model's prediction drawn over them in the shared class palette
(``components.visualize``: the same colour is the same class in every run and
tool), and the k test images the candidate scores worst, by file name.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf
from PIL import Image

from components import schema, visualize
from components.metrics import confusion_matrix, segmentation_metrics

# The shared class colours (components.visualize); index = class id (pet, background, border).
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


def _number(value: float | int | None, digits: int = 4) -> str:
    if value is None:
        return f'<span class="na" title="{_UNDEFINED}">n/a</span>'
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}f}"


def _image(pixels: np.ndarray, alt: str) -> str:
    return (
        f'<img src="{png_data_uri(pixels)}" alt="{html.escape(alt)}" '
        f'width="{DISPLAY_WIDTH_PX}" height="{DISPLAY_WIDTH_PX}">'
    )


def _legend(classes: Sequence[str]) -> str:
    palette = visualize.class_palette(len(classes))
    items = "".join(
        f'<span class="swatch" style="background: rgb{tuple(int(c) for c in colour)}"></span>'
        f"{html.escape(name)}&nbsp;&nbsp;"
        for colour, name in zip(palette, classes, strict=True)
    )
    return f'<p class="legend">{items}</p>'


def _delta(candidate: float | int | None, baseline: float | int | None) -> str:
    if candidate is None or baseline is None:
        return _number(None)
    delta = float(candidate) - float(baseline)
    style = "better" if delta > 0 else "worse" if delta < 0 else "same"
    return f'<span class="{style}">{delta:+.4f}</span>'


def _metrics_table(candidate: dict[str, Any], baseline: dict[str, Any] | None) -> str:
    """Candidate, and with a baseline: baseline and candidate − baseline, row by row."""
    header = "<th>candidate</th>" + ("<th>baseline</th><th>Δ</th>" if baseline else "")
    rows = []

    def row(label: str, getter: Any, delta: bool = True) -> None:
        value = getter(candidate)
        cells = f"<td>{_number(value)}</td>"
        if baseline:
            other = getter(baseline)
            cells += f"<td>{_number(other)}</td><td>{_delta(value, other) if delta else ''}</td>"
        rows.append(f"<tr><th>{html.escape(label)}</th>{cells}</tr>")

    row("mean IoU", lambda metrics: metrics["mean_iou"])
    row("pixel accuracy", lambda metrics: metrics["pixel_accuracy"])
    for name in candidate["classes"]:
        for key in ("iou", "precision", "recall"):
            row(
                f"{name} {key}",
                lambda metrics, n=name, k=key: metrics["per_class"].get(n, {}).get(k),
            )
    row("images", lambda metrics: metrics.get("num_images"), delta=False)
    return f"<table><tr><th>metric</th>{header}</tr>{''.join(rows)}</table>"


def _confusion_table(metrics: dict[str, Any]) -> str:
    classes = metrics["classes"]
    header = "".join(f"<th>pred {html.escape(name)}</th>" for name in classes)
    rows = "".join(
        f"<tr><th>true {html.escape(name)}</th>"
        + "".join(f"<td>{count:,}</td>" for count in counts)
        + "</tr>"
        for name, counts in zip(classes, metrics["confusion_matrix"], strict=True)
    )
    return f"<table><tr><th></th>{header}</tr>{rows}</table>"


def _image_cells(
    sample: dict[str, Any],
    palette: np.ndarray,
    baseline_predictions: dict[str, tuple[np.ndarray, float | None]] | None,
) -> str:
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
    return "".join(cells)


def _image_iou(sample: dict[str, Any], classes: Sequence[str]) -> tuple[float | None, float | None]:
    """(pixel accuracy, mean IoU) of one image."""
    per_image = segmentation_metrics(
        confusion_matrix(
            np.asarray(sample["true_mask"]), np.asarray(sample["predicted_mask"]), len(classes)
        ),
        classes,
    )
    return per_image["pixel_accuracy"], per_image["mean_iou"]


def _image_header(with_baseline: bool) -> str:
    columns = ["image", "true mask", "candidate"] + (["baseline"] if with_baseline else [])
    return "".join(f"<th>{column}</th>" for column in columns)


def _sample_rows(
    samples: Sequence[dict[str, Any]],
    classes: Sequence[str],
    baseline_predictions: dict[str, tuple[np.ndarray, float | None]] | None = None,
) -> str:
    palette = visualize.class_palette(len(classes))
    rows = []
    for sample in samples:
        name = str(sample["file_name"])
        accuracy, mean_iou = _image_iou(sample, classes)
        caption = (
            f"{html.escape(name)}<br>pixel accuracy {_number(accuracy, 3)}, "
            f"mean IoU {_number(mean_iou, 3)}"
        )
        if baseline_predictions is not None and name in baseline_predictions:
            caption += f"<br>baseline mean IoU {_number(baseline_predictions[name][1], 3)}"
        rows.append(
            f"<tr>{_image_cells(sample, palette, baseline_predictions)}<td>{caption}</td></tr>"
        )
    if not rows:
        return "<p>No sample images (evaluation.report_images is 0).</p>"
    header = _image_header(baseline_predictions is not None)
    return f"<table class='samples'><tr>{header}<th></th></tr>{''.join(rows)}</table>"


def _worst_rows(
    worst: Sequence[dict[str, Any]],
    classes: Sequence[str],
    baseline_predictions: dict[str, tuple[np.ndarray, float | None]] | None = None,
) -> str:
    palette = visualize.class_palette(len(classes))
    with_baseline = baseline_predictions is not None
    rows = []
    for rank, sample in enumerate(worst, start=1):
        name = str(sample["file_name"])
        cells = f"<td>{rank}</td><td class='name'>{html.escape(name)}</td>"
        cells += f"<td>{_number(sample.get('mean_iou'), 3)}</td>"
        if with_baseline:
            cells += f"<td>{_number(baseline_predictions.get(name, (None, None))[1], 3)}</td>"
        rows.append(f"<tr>{cells}{_image_cells(sample, palette, baseline_predictions)}</tr>")
    iou_header = "<th>mean IoU</th>" + ("<th>baseline mean IoU</th>" if with_baseline else "")
    header = f"<th>rank</th><th>file</th>{iou_header}{_image_header(with_baseline)}"
    return f"<table class='samples worst'><tr>{header}</tr>{''.join(rows)}</table>"


_STYLE = """
body { font-family: sans-serif; margin: 1.5em; }
table { border-collapse: collapse; margin-bottom: 1.5em; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
.samples td { text-align: center; vertical-align: middle; }
img { image-rendering: pixelated; }
.swatch { display: inline-block; width: 1em; height: 1em; margin-right: 0.3em;
          vertical-align: middle; border: 1px solid #888; }
.blessed, .better { color: #007a3d; } .rejected, .worse { color: #b00020; }
.na { color: #888; } .worst .name { text-align: left; }
"""


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
) -> str:
    """Renders the report as one HTML string.

    Args:
        candidate: the candidate's metrics (``segmentation_metrics`` output,
            optionally with num_images, split, model_dir).
        samples: {file_name, image [S, S, 3] uint8, true_mask, predicted_mask [S, S]}.
        baseline: the baseline's metrics, shown beside the candidate's with deltas, or None.
        blessed: the decision, or None if none was made.
        reasons: why, one line each.
        title: the page heading.
        worst: the images the candidate scores worst, worst first, as samples plus
            ``mean_iou`` (``evaluate.WorstImages``).
        baseline_predictions: {file_name: (predicted mask, mean IoU)} of the baseline on
            the sample and worst images, drawn next to the candidate's; None: no baseline.
    """
    classes = candidate["classes"]
    if baseline is None:
        baseline_predictions = None
    elif baseline_predictions is None:
        baseline_predictions = {}
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    if blessed is not None:
        verdict = "blessed" if blessed else "not blessed"
        parts.append(f"<h2 class='{'blessed' if blessed else 'rejected'}'>Model {verdict}</h2>")
    if reasons:
        parts.append("<ul>" + "".join(f"<li>{html.escape(r)}</li>" for r in reasons) + "</ul>")
    details = [
        f"{key}: {html.escape(str(candidate[key]))}"
        for key in ("split", "model_dir", "dataset_dir", "evaluation_size")
        if key in candidate
    ]
    if baseline and "model_dir" in baseline:
        details.append(f"baseline model_dir: {html.escape(str(baseline['model_dir']))}")
    if details:
        parts.append("<p>" + "<br>".join(details) + "</p>")
    parts += [
        "<h2>Metrics</h2>",
        "<p>IoU, precision or recall is n/a where its denominator is zero; a class absent "
        "from both truth and prediction is left out of the mean IoU."
        + (" Δ is candidate − baseline on the same images." if baseline else "")
        + "</p>",
        _metrics_table(candidate, baseline),
        "<h2>Confusion matrix (pixels; rows true, columns predicted)</h2>",
        _confusion_table(candidate),
        "<h2>Samples</h2>",
        _legend(classes),
        _sample_rows(samples, classes, baseline_predictions),
    ]
    if worst:
        parts += [
            f"<h2>The {len(worst)} images the candidate scores worst (mean IoU per image)</h2>",
            _worst_rows(worst, classes, baseline_predictions),
        ]
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(path: str, candidate: dict[str, Any], **kwargs: Any) -> None:
    """Renders the report and writes it to ``path`` (local or gs://), creating its folder."""
    folder = path.rsplit("/", 1)[0] if "/" in path else ""
    if folder:
        tf.io.gfile.makedirs(folder)
    with tf.io.gfile.GFile(path, "w") as handle:
        handle.write(render_report(candidate, **kwargs))
