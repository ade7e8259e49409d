"""The HTML report: self-contained, fixed palette, every sample and metric present."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from PIL import Image

from components import evaluate, report, schema


def _samples(count):
    rng = np.random.default_rng(0)
    samples = []
    for index in range(count):
        true_mask = rng.integers(0, 3, size=(8, 8)).astype(np.uint8)
        samples.append(
            {
                "file_name": f"cat_<{index}>.jpg",
                "image": rng.integers(0, 256, size=(8, 8, 3)).astype(np.uint8),
                "true_mask": true_mask,
                "predicted_mask": true_mask if index == 0 else np.zeros_like(true_mask),
            }
        )
    return samples


def _metrics(true, pred):
    metrics = evaluate.segmentation_metrics(evaluate.confusion_matrix(true, pred, 3))
    metrics["num_images"] = 2
    return metrics


def _decode_images(page):
    uris = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    return [np.asarray(Image.open(io.BytesIO(base64.b64decode(uri)))) for uri in uris]


def test_colorize_mask_uses_the_fixed_palette():
    mask = np.array([[0, 1], [2, 0]], dtype=np.uint8)
    colours = report.colorize_mask(mask)
    assert colours.shape == (2, 2, 3) and colours.dtype == np.uint8
    assert tuple(colours[0, 0]) == report.PALETTE[0]
    assert tuple(colours[0, 1]) == report.PALETTE[1]
    assert tuple(colours[1, 0]) == report.PALETTE[2]
    # [H, W, 1] masks, as records decode, give the same picture.
    np.testing.assert_array_equal(report.colorize_mask(mask[..., None]), colours)
    assert len(set(report.PALETTE[: schema.NUM_CLASSES])) == schema.NUM_CLASSES


def test_colorize_mask_rejects_out_of_range_ids():
    with pytest.raises(ValueError, match=r"outside 0\.\.2"):
        report.colorize_mask(np.array([[3]]))
    with pytest.raises(ValueError, match=r"\[9\] outside 0\.\.8"):
        report.colorize_mask(np.array([[9]]), num_classes=len(report.PALETTE) + 1)


def test_png_data_uri_round_trips_pixels():
    pixels = np.random.default_rng(2).integers(0, 256, size=(5, 7, 3)).astype(np.uint8)
    uri = report.png_data_uri(pixels)
    assert uri.startswith("data:image/png;base64,")
    decoded = np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))
    np.testing.assert_array_equal(decoded, pixels)


def test_report_shows_each_sample_as_image_true_and_predicted_masks():
    samples = _samples(2)
    true = np.stack([s["true_mask"] for s in samples])
    pred = np.stack([s["predicted_mask"] for s in samples])
    page = report.render_report(_metrics(true, pred), samples, blessed=True, reasons=["ok"])
    images = _decode_images(page)
    assert len(images) == 3 * len(samples)
    for index, sample in enumerate(samples):
        image, true_colours, predicted_colours = images[3 * index : 3 * index + 3]
        np.testing.assert_array_equal(image, sample["image"])
        np.testing.assert_array_equal(true_colours, report.colorize_mask(sample["true_mask"]))
        np.testing.assert_array_equal(
            predicted_colours, report.colorize_mask(sample["predicted_mask"])
        )
    # File names are escaped, and the first sample (perfect) says so in its caption.
    assert "cat_&lt;0&gt;.jpg<br>pixel accuracy 1.000" in page
    assert "<0>" not in page
    # Self-contained: no external resources.
    assert not re.search(r'(src|href)="(?!data:)', page)


def test_report_has_legend_metrics_confusion_matrix_and_decision():
    true = np.array([[0, 0, 0, 1], [1, 1, 2, 2]])
    pred = np.array([[0, 0, 1, 1], [1, 2, 2, 0]])
    candidate = _metrics(true, pred)
    baseline = _metrics(true, true)
    page = report.render_report(
        candidate,
        [],
        baseline=baseline,
        blessed=False,
        reasons=["mean IoU 0.4444 < min_mean_iou 0.5000"],
    )
    for name, colour in zip(schema.CLASS_NAMES, report.PALETTE, strict=False):
        assert f'background: rgb{colour}"></span>{name}' in page
    assert "Model not blessed" in page
    assert "mean IoU 0.4444 &lt; min_mean_iou 0.5000" in page
    assert "<tr><th>mean IoU</th><td>0.4444</td><td>1.0000</td></tr>" in page
    assert "<tr><th>border iou</th><td>0.3333</td><td>1.0000</td></tr>" in page
    assert "<tr><th>true pet</th><td>2</td><td>1</td><td>0</td></tr>" in page
    assert "report_images is 0" in page


def test_report_shows_undefined_metrics_as_na():
    true = np.array([0, 0, 1])
    candidate = _metrics(true, true)  # border absent from truth and prediction
    page = report.render_report(candidate)
    assert '<tr><th>border iou</th><td><span class="na"' in page
    assert "nan" not in page.lower().replace("nbsp", "")


def test_write_report_creates_the_folder(tmp_path):
    path = tmp_path / "deep" / "report.html"
    true = np.array([0, 1, 2])
    report.write_report(str(path), _metrics(true, true), samples=_samples(1))
    text = path.read_text()
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert len(_decode_images(text)) == 3
