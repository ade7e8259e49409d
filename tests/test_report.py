"""The HTML report: self-contained, fixed palette, every sample and metric present."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from PIL import Image

from components.data import schema
from components.evaluation import evaluate, report, visualize
from components.evaluation.metrics import confusion_matrix


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
    metrics = evaluate.segmentation_metrics(confusion_matrix(true, pred, 3))
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


def _over(image, mask):
    return visualize.overlay(image, mask, visualize.class_palette(3), report.OVERLAY_ALPHA)


def test_report_draws_truth_and_prediction_over_each_sample_image():
    samples = _samples(2)
    true = np.stack([s["true_mask"] for s in samples])
    pred = np.stack([s["predicted_mask"] for s in samples])
    page = report.render_report(_metrics(true, pred), samples, blessed=True, reasons=["ok"])
    images = _decode_images(page)
    assert len(images) == 3 * len(samples)
    for index, sample in enumerate(samples):
        image, true_drawn, predicted_drawn = images[3 * index : 3 * index + 3]
        np.testing.assert_array_equal(image, sample["image"])
        np.testing.assert_array_equal(true_drawn, _over(sample["image"], sample["true_mask"]))
        np.testing.assert_array_equal(
            predicted_drawn, _over(sample["image"], sample["predicted_mask"])
        )
    # File names are escaped, and the first sample (perfect) says so in its caption.
    assert "cat_&lt;0&gt;.jpg<br>pixel accuracy 1.000" in page
    assert "<0>" not in page
    assert "baseline" not in page
    # Self-contained: no external resources.
    assert not re.search(r'(src|href)="(?!data:)', page)


def test_baseline_section_shows_deltas_and_the_baseline_on_the_same_images():
    samples = _samples(2)
    true = np.stack([s["true_mask"] for s in samples])
    candidate = _metrics(true, np.stack([s["predicted_mask"] for s in samples]))
    baseline = _metrics(true, true)
    baseline["model_dir"] = "/models/versions/v000003"
    # The baseline predicts everything as background on the first image, perfectly on the second.
    baseline_masks = {
        samples[0]["file_name"]: (np.ones((8, 8), np.uint8), 0.123),
        samples[1]["file_name"]: (samples[1]["true_mask"], 1.0),
    }
    page = report.render_report(
        candidate, samples, baseline=baseline, baseline_predictions=baseline_masks
    )
    delta = candidate["mean_iou"] - 1.0
    assert delta < 0
    assert (
        f"<tr><th>mean IoU</th><td>{candidate['mean_iou']:.4f}</td><td>1.0000</td>"
        f'<td><span class="worse">{delta:+.4f}</span></td></tr>'
    ) in page
    assert "<tr><th>images</th><td>2</td><td>2</td><td></td></tr>" in page
    assert "baseline model_dir: /models/versions/v000003" in page
    images = _decode_images(page)
    assert len(images) == 4 * len(samples)
    for index, sample in enumerate(samples):
        baseline_drawn = images[4 * index + 3]
        mask = baseline_masks[sample["file_name"]][0]
        np.testing.assert_array_equal(baseline_drawn, _over(sample["image"], mask))
    assert "baseline mean IoU 0.123" in page and "baseline mean IoU 1.000" in page


def test_worst_section_lists_images_by_rank_with_names_and_ious():
    samples = _samples(3)
    worst = [
        {**samples[2], "mean_iou": 0.05},
        {**samples[1], "mean_iou": 0.25},
    ]
    true = np.stack([s["true_mask"] for s in samples])
    candidate = _metrics(true, true)
    baseline_masks = {samples[2]["file_name"]: (samples[2]["true_mask"], 0.9)}
    page = report.render_report(
        candidate, [], baseline=candidate, worst=worst, baseline_predictions=baseline_masks
    )
    assert "The 2 images the candidate scores worst" in page
    rows = re.findall(
        r"<tr><td>(\d+)</td><td class='name'>([^<]+)</td><td>([^<]+)</td>"
        r"<td>(.*?)</td>",
        page,
    )
    assert [(rank, name, iou) for rank, name, iou, _ in rows] == [
        ("1", "cat_&lt;2&gt;.jpg", "0.050"),
        ("2", "cat_&lt;1&gt;.jpg", "0.250"),
    ]
    assert rows[0][3] == "0.900" and "n/a" in rows[1][3]  # baseline's IoU on the same image
    images = _decode_images(page)
    np.testing.assert_array_equal(images[0], samples[2]["image"])
    np.testing.assert_array_equal(
        images[2], _over(samples[2]["image"], samples[2]["predicted_mask"])
    )
    np.testing.assert_array_equal(images[3], _over(samples[2]["image"], samples[2]["true_mask"]))
    assert "not scored" in page  # the baseline has no prediction for the second image
    assert len(images) == 4 + 3


def test_report_palette_follows_any_number_of_classes():
    classes = [f"class {index}" for index in range(12)]
    mask = np.arange(12, dtype=np.uint8).reshape(3, 4)
    metrics = evaluate.segmentation_metrics(confusion_matrix(mask, mask, 12), classes)
    sample = {
        "file_name": "x.png",
        "image": np.zeros((3, 4, 3), np.uint8),
        "true_mask": mask,
        "predicted_mask": mask,
    }
    page = report.render_report(metrics, [sample])
    palette = visualize.class_palette(12)
    for name, colour in zip(classes, palette, strict=True):
        assert f'background: rgb{tuple(int(c) for c in colour)}"></span>{name}' in page
    drawn = _decode_images(page)[1]
    np.testing.assert_array_equal(drawn, _over_n(sample["image"], mask, 12))


def _over_n(image, mask, num_classes):
    return visualize.overlay(
        image, mask, visualize.class_palette(num_classes), report.OVERLAY_ALPHA
    )


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
    worse = '<td><span class="worse">'
    assert f"<tr><th>mean IoU</th><td>0.4444</td><td>1.0000</td>{worse}-0.5556</span></td>" in page
    assert f"<tr><th>border iou</th><td>0.3333</td><td>1.0000</td>{worse}-0.6667</span>" in page
    # Counts with their row share; the cell's shade is the share (rows true: pet 2, 1, 0).
    assert re.search(
        r"<tr><th>true pet</th>"
        r'<td style="background: rgba\(0, 90, 160, 0\.667\); color: #fff">2 '
        r'<span class="share">\(66\.7%\)</span></td>'
        r'<td style="background: rgba\(0, 90, 160, 0\.333\); color: #000">1 '
        r'<span class="share">\(33\.3%\)</span></td>'
        r'<td style="background: rgba\(0, 90, 160, 0\.000\); color: #000">0 ',
        page,
    )
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
