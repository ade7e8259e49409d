"""The evaluation's visual report: one self-contained HTML file for the KFP UI.

The KFP UI shows an ``HTML`` artifact from its single file, with no way to
fetch side files, so every picture is an inline base64 PNG. Each sample row
shows the input image, the true mask and the predicted mask side by side in
a fixed palette (the same colour always means the same class, in every run),
followed by the metrics table, the confusion matrix and the blessing decision.
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


def _metrics_table(candidate: dict[str, Any], baseline: dict[str, Any] | None) -> str:
    columns = ["candidate"] + (["baseline"] if baseline else [])
    header = "".join(f"<th>{name}</th>" for name in columns)
    rows = []

    def row(label: str, getter: Any) -> None:
        cells = "".join(
            f"<td>{_number(getter(metrics))}</td>"
            for metrics in ([candidate] + ([baseline] if baseline else []))
        )
        rows.append(f"<tr><th>{html.escape(label)}</th>{cells}</tr>")

    row("mean IoU", lambda metrics: metrics["mean_iou"])
    row("pixel accuracy", lambda metrics: metrics["pixel_accuracy"])
    for name in candidate["classes"]:
        for key in ("iou", "precision", "recall"):
            row(f"{name} {key}", lambda metrics, n=name, k=key: metrics["per_class"][n][k])
    row("images", lambda metrics: metrics.get("num_images"))
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


def _sample_rows(samples: Sequence[dict[str, Any]], classes: Sequence[str]) -> str:
    rows = []
    for sample in samples:
        true_mask = np.asarray(sample["true_mask"])
        predicted_mask = np.asarray(sample["predicted_mask"])
        per_image = segmentation_metrics(
            confusion_matrix(true_mask, predicted_mask, len(classes)), classes
        )
        name = str(sample["file_name"])
        caption = (
            f"{html.escape(name)}<br>pixel accuracy {_number(per_image['pixel_accuracy'], 3)}, "
            f"mean IoU {_number(per_image['mean_iou'], 3)}"
        )
        rows.append(
            "<tr>"
            f"<td>{_image(sample['image'], name + ' image')}</td>"
            f"<td>{_image(colorize_mask(true_mask, len(classes)), name + ' true mask')}</td>"
            f"<td>{_image(colorize_mask(predicted_mask, len(classes)), name + ' predicted')}</td>"
            f"<td>{caption}</td>"
            "</tr>"
        )
    if not rows:
        return "<p>No sample images (evaluation.report_images is 0).</p>"
    return (
        "<table class='samples'><tr><th>image</th><th>true mask</th>"
        f"<th>predicted mask</th><th></th></tr>{''.join(rows)}</table>"
    )


_STYLE = """
body { font-family: sans-serif; margin: 1.5em; }
table { border-collapse: collapse; margin-bottom: 1.5em; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
.samples td { text-align: center; vertical-align: middle; }
img { image-rendering: pixelated; }
.swatch { display: inline-block; width: 1em; height: 1em; margin-right: 0.3em;
          vertical-align: middle; border: 1px solid #888; }
.blessed { color: #007a3d; } .rejected { color: #b00020; } .na { color: #888; }
"""


def render_report(
    candidate: dict[str, Any],
    samples: Sequence[dict[str, Any]] = (),
    *,
    baseline: dict[str, Any] | None = None,
    blessed: bool | None = None,
    reasons: Sequence[str] = (),
    title: str = "petseg evaluation",
) -> str:
    """Renders the report as one HTML string.

    Args:
        candidate: the candidate's metrics (``segmentation_metrics`` output,
            optionally with num_images, split, model_dir).
        samples: {file_name, image [S, S, 3] uint8, true_mask, predicted_mask [S, S]}.
        baseline: the baseline's metrics, shown beside the candidate's, or None.
        blessed: the decision, or None if none was made.
        reasons: why, one line each.
        title: the page heading.
    """
    classes = candidate["classes"]
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
    if details:
        parts.append("<p>" + "<br>".join(details) + "</p>")
    parts += [
        "<h2>Metrics</h2>",
        "<p>IoU, precision or recall is n/a where its denominator is zero; a class absent "
        "from both truth and prediction is left out of the mean IoU.</p>",
        _metrics_table(candidate, baseline),
        "<h2>Confusion matrix (pixels; rows true, columns predicted)</h2>",
        _confusion_table(candidate),
        "<h2>Samples</h2>",
        _legend(classes),
        _sample_rows(samples, classes),
        "</body></html>",
    ]
    return "\n".join(parts)


def write_report(path: str, candidate: dict[str, Any], **kwargs: Any) -> None:
    """Renders the report and writes it to ``path`` (local or gs://), creating its folder."""
    folder = path.rsplit("/", 1)[0] if "/" in path else ""
    if folder:
        tf.io.gfile.makedirs(folder)
    with tf.io.gfile.GFile(path, "w") as handle:
        handle.write(render_report(candidate, **kwargs))
