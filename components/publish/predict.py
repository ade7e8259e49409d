"""Batch prediction with an exported model: the core of ``petseg predict`` and the predict step.

Predictions come from the model's ``saved_model/`` ``serving_default`` signature, the one
Vertex AI serves, so a file written here is what an online client would get for the same
image: training's exact resize, a class-id mask at the image's own resolution, class
fractions and mean confidence. For each readable image the output folder gets::

    <output>/masks/<name>.png        class ids (uint8, one channel) at the image's resolution
    <output>/overlays/<name>.png     the image with class colours blended over it
    <output>/predictions.jsonl       one line: file, mask, overlay, height, width,
                                     class_fractions {class: fraction}, mean_confidence
    <output>/failed.jsonl            one line per unreadable image: file, error
    <output>/skipped.jsonl           one line per other file of the input folder: file, reason

``<name>`` is the image's path relative to the input folder (or glob base, or gs:// prefix)
without its extension, so sub-folders never collide; two inputs that differ only by
extension keep it (``cat.jpg.png``). An unreadable image is skipped and listed; the others
are still predicted. A folder's files whose names are not images' (``notes.txt``) are listed
as skipped, with the reason, never dropped without a word. Extensions match in any case;
TIFF, which TensorFlow's decoder (and so the served model) does not read, goes through
Pillow and reaches the model as PNG.
"""

from __future__ import annotations

import collections
import glob
import json
import os
import posixpath
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from components.evaluation import visualize
from components.model.model import (
    MASK_PNG_OUTPUT,
    METADATA_FILE,
    SAVED_MODEL_DIR,
    SERVING_SIGNATURE,
)
from components.platform import files
from components.platform.config import PredictConfig
from components.platform.contracts import (
    ArtifactRef,
    ModelMetadata,
    PredictionSummary,
    StepInputs,
)

IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff",
)  # fmt: skip
MASKS_DIR = "masks"
OVERLAYS_DIR = "overlays"
PREDICTIONS_FILE = "predictions.jsonl"
FAILED_FILE = "failed.jsonl"
SKIPPED_FILE = "skipped.jsonl"
DEFAULT_BATCH_SIZE = 16
DEFAULT_ALPHA = 0.5
# Exit codes of `petseg predict` (the CLI returns them; the pipeline step records the counts).
EXIT_OK = 0
EXIT_FAILED = 1  # nothing predicted: the model or the input could not be used
EXIT_SOME_UNREADABLE = 3  # the readable images were predicted; the others are in failed.jsonl
_GLOB_CHARACTERS = "*?["


class PredictError(ValueError):
    """The model or the input cannot be used; the message names which and why."""


@dataclass(frozen=True)
class InputImage:
    """One image to predict: where it is and the name its outputs get."""

    uri: str
    name: str


def exit_code(summary: PredictionSummary) -> int:
    """`petseg predict`'s exit code for a run: 3 when some images were unreadable."""
    return EXIT_SOME_UNREADABLE if summary.unreadable else EXIT_OK


def summary_line(summary: PredictionSummary, output: str) -> str:
    """The one line `petseg predict` prints: counts and where the lists are."""
    text = f"predicted {summary.predicted} image(s) into {output}"
    if summary.unreadable:
        failed = files.join(output, FAILED_FILE)
        text += f"; {summary.unreadable} unreadable, skipped and listed in {failed}"
    if summary.skipped:
        text += (
            f"; {summary.skipped} other file(s) not read (not images), listed in "
            f"{files.join(output, SKIPPED_FILE)}"
        )
    return text


def listed(output: str, name: str) -> list[dict[str, Any]]:
    """The rows of one of the output's JSON Lines files (failed.jsonl, skipped.jsonl)."""
    text = files.read_text(files.join(output, name))
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _not_an_image(uri: str) -> dict[str, str]:
    extension = os.path.splitext(uri)[1] or "no extension"
    return {
        "file": uri,
        "reason": f"not an image file name ({extension}); predict reads "
        + ", ".join(IMAGE_EXTENSIONS),
    }


def _has_glob(text: str) -> bool:
    return any(character in text for character in _GLOB_CHARACTERS)


def _output_names(relative_paths: list[str]) -> list[str]:
    """Relative paths without extension; paths that would collide keep their extension."""
    stems = [os.path.splitext(path)[0] for path in relative_paths]
    counts = collections.Counter(stems)
    return [
        stem if counts[stem] == 1 else path
        for stem, path in zip(stems, relative_paths, strict=True)
    ]


def _images(uris: list[str], relative_paths: list[str]) -> list[InputImage]:
    order = sorted(range(len(uris)), key=lambda index: relative_paths[index])
    uris = [uris[index] for index in order]
    names = _output_names([relative_paths[index] for index in order])
    return [InputImage(uri, name) for uri, name in zip(uris, names, strict=True)]


def list_inputs(spec: str, *, skipped: list[dict[str, str]] | None = None) -> list[InputImage]:
    """The images an input names, in a stable (sorted) order.

    Args:
        spec: an image file (any extension), a folder (its image files, sub-folders
            included), a glob (``photos/*.jpg``, ``**`` recursive; every match), or a gs://
            object, prefix or glob.
        skipped: gets ``{file, reason}`` for each file of a folder or prefix that is not
            an image by its name (a glob's or a file's matches are all tried).

    Raises:
        PredictError: the input does not exist or holds no image.
    """
    others: list[dict[str, str]] = [] if skipped is None else skipped
    spec = spec.strip()
    if not spec:
        raise PredictError("--input is empty; give an image file, a folder, a glob or gs:// prefix")
    if _has_glob(spec):
        base = _glob_base(spec)
        if files.is_remote(spec):
            matches = files.glob(spec)
            relative = [match[len(base) :].lstrip("/") for match in matches]
        else:
            matches = sorted(p for p in glob.glob(spec, recursive=True) if os.path.isfile(p))
            relative = [os.path.relpath(p, base) for p in matches]
        images = _images(matches, relative)
    elif files.is_file(spec):
        images = [InputImage(spec, posixpath.splitext(posixpath.basename(spec))[0])]
    elif files.is_dir(spec):
        listed = files.list_files(spec)
        names = [name for name in listed if _is_image_name(name)]
        others.extend(
            _not_an_image(files.join(spec, name)) for name in listed if not _is_image_name(name)
        )
        images = _images([files.join(spec, name) for name in names], names)
    else:
        raise PredictError(f"--input {spec!r}: no such file or folder")
    if not images:
        also = f"; its {len(others)} file(s) are not images, e.g. {others[0]['file']}"
        raise PredictError(
            f"--input {spec!r} holds no image file ({', '.join(IMAGE_EXTENSIONS)})"
            + (also if others else "")
        )
    return images


def _glob_base(pattern: str) -> str:
    parts = pattern.split("/")
    fixed = []
    for part in parts[:-1]:
        if _has_glob(part):
            break
        fixed.append(part)
    return "/".join(fixed) or "."


def resolve_model(model: str, cache_dir: str, *, gcs_client: Any = None) -> str:
    """A local model directory for a model directory or a push destination (its LATEST).

    Args:
        model: a model directory (holding metadata.json and saved_model/), local or gs://,
            or a push destination whose LATEST names the model to use.
        cache_dir: where gs:// models are downloaded.
        gcs_client: a google-cloud-storage client for gs:// (default: the current
            ``files.gcs_client`` block's, else ADC or the emulator).

    Raises:
        PredictError: the location is neither a model directory nor a push destination,
            or the destination has no model yet.
    """
    from components.publish import push
    from components.publish.versions import VersionError, check_not_incomplete

    model = model.strip()
    if not model:
        raise PredictError("--model is empty; give a model directory or a push destination")
    with files.gcs_client(gcs_client):
        try:
            check_not_incomplete(model)  # a killed push's version: say so, not "no SavedModel"
        except VersionError as error:
            raise PredictError(str(error)) from None
        if files.is_file(files.join(model, METADATA_FILE)):
            return _download_model_dir(model, cache_dir) if files.is_remote(model) else model
        if not files.is_remote(model) and not os.path.isdir(model):
            raise PredictError(f"--model {model!r}: no such folder")
        if not files.is_file(files.join(model, push.LATEST_FILE)):
            raise PredictError(
                f"--model {model!r} is neither a model directory (no {METADATA_FILE}) nor a "
                f"push destination (no {push.LATEST_FILE})"
            )
        # push's own reader, which verifies every file against the version's manifest
        return push.resolve_latest_model(model, cache_dir)


def _download_model_dir(model: str, cache_dir: str) -> str:
    """Copies metadata.json and saved_model/ of a gs:// model directory (not model.keras)."""
    target = tempfile.mkdtemp(prefix="model-", dir=cache_dir)
    for relative in files.list_files(model):
        if relative == METADATA_FILE or relative.startswith(f"{SAVED_MODEL_DIR}/"):
            local_path = os.path.join(target, *relative.split("/"))
            files.write_bytes(local_path, files.read_bytes(files.join(model, relative)))
    return target


class Predictor:
    """A loaded model directory's serving signature and its class names."""

    def __init__(self, model_dir: str):
        import tensorflow as tf

        metadata_path = os.path.join(model_dir, METADATA_FILE)
        try:
            classes = ModelMetadata.read(metadata_path).classes
        except (OSError, ValueError) as error:
            raise PredictError(
                f"{metadata_path}: cannot read the model's metadata ({error})"
            ) from None
        if not classes:
            raise PredictError(f"{metadata_path}: no 'classes' list")
        saved_model = os.path.join(model_dir, SAVED_MODEL_DIR)
        if not os.path.isdir(saved_model):
            raise PredictError(f"{saved_model} not found: {model_dir!r} has no SavedModel")
        loaded = tf.saved_model.load(saved_model)
        signature = loaded.signatures.get(SERVING_SIGNATURE)
        outputs = set(signature.structured_outputs) if signature is not None else set()
        if not {MASK_PNG_OUTPUT, "class_fractions", "mean_confidence"} <= outputs:
            raise PredictError(
                f"{saved_model}: its {SERVING_SIGNATURE} signature has no input-size mask "
                f"({sorted(outputs)}); it was exported by an older petseg, train it again"
            )
        num_outputs = signature.structured_outputs["class_fractions"].shape[-1]
        if num_outputs != len(classes):
            raise PredictError(
                f"{metadata_path}: {len(classes)} classes {classes}, but the SavedModel "
                f"predicts {num_outputs}"
            )
        self._loaded = loaded  # keeps the signature's variables alive
        self._signature = signature
        self.model_dir = model_dir
        self.classes = [str(name) for name in classes]
        self.palette = visualize.class_palette(len(self.classes))

    def __call__(self, encoded: list[bytes]) -> dict[str, np.ndarray]:
        import tensorflow as tf

        outputs = self._signature(image_bytes=tf.constant(encoded))
        return {name: value.numpy() for name, value in outputs.items()}


def _decode(encoded: bytes) -> tuple[bytes, np.ndarray]:
    """(bytes for the served model, RGB pixels); raises ValueError on unreadable bytes.

    TensorFlow's decoder, the served model's own, reads JPEG, PNG, GIF, BMP and WebP; what it
    cannot read but Pillow can (TIFF) is handed to the model as a lossless PNG of the same
    pixels.
    """
    import tensorflow as tf

    from components.data.dataset_info import reader_message

    try:
        image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as error:
        converted = _pillow_png(encoded)
        if converted is None:
            raise ValueError(f"not a readable image: {reader_message(error)}") from None
        return converted
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"empty image ({image.shape[0]}x{image.shape[1]})")
    return encoded, image.numpy()


def _pillow_png(encoded: bytes) -> tuple[bytes, np.ndarray] | None:
    """(PNG bytes, RGB pixels) of an image Pillow reads (first frame), else None."""
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(encoded)) as opened:
            pixels = np.asarray(opened.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError):
        return None
    if pixels.shape[0] == 0 or pixels.shape[1] == 0:
        return None
    return visualize.encode_png(pixels), pixels


class _Output:
    """Writes outputs under a local folder or a gs:// prefix, summary lines as they come."""

    def __init__(self, root: str):
        self.root = root
        self._lines: dict[str, list[str]] = {
            PREDICTIONS_FILE: [],
            FAILED_FILE: [],
            SKIPPED_FILE: [],
        }
        if not files.is_remote(root):
            for name in self._lines:  # a new run replaces an earlier run's lists
                files.write_bytes(os.path.join(root, name), b"")

    def write(self, key: str, data: bytes) -> None:
        files.write_bytes(files.join(self.root, key), data)

    def append(self, name: str, rows: list[dict[str, Any]]) -> None:
        lines = [json.dumps(row) + "\n" for row in rows]
        if files.is_remote(self.root):
            self._lines[name].extend(lines)
            return
        with open(os.path.join(self.root, name), "a") as handle:
            handle.writelines(lines)

    def close(self) -> None:
        """Writes the summary objects on GCS (objects cannot be appended to)."""
        if files.is_remote(self.root):
            for name, lines in self._lines.items():
                files.write_text(files.join(self.root, name), "".join(lines))


def _batches(
    images: list[InputImage], batch_size: int, failed: list[dict[str, str]]
) -> Iterator[list[tuple[InputImage, bytes, np.ndarray]]]:
    batch: list[tuple[InputImage, bytes, np.ndarray]] = []
    for image in images:
        try:
            encoded, pixels = _decode(files.read_bytes(image.uri))
        except Exception as error:  # any read or decode failure skips this image only
            failed.append({"file": image.uri, "error": str(error) or type(error).__name__})
            continue
        batch.append((image, encoded, pixels))
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def predict(
    model: str,
    inputs: str,
    output: str,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    alpha: float = DEFAULT_ALPHA,
    cache_dir: str | None = None,
    gcs_client: Any = None,
    progress: Callable[[int, int], None] | None = None,
) -> PredictionSummary:
    """Predicts every image an input names and writes masks, overlays and summaries.

    Args:
        model: a model directory or push destination (local or gs://); see resolve_model.
        inputs: an image file, folder, glob or gs:// prefix; see list_inputs.
        output: a folder (created) or gs:// prefix for masks/, overlays/ and the JSON Lines.
        batch_size: images per call of the model.
        alpha: the overlay's colour weight.
        cache_dir: where a gs:// model is downloaded; default a temporary folder, removed.
        gcs_client: a google-cloud-storage client for gs:// locations (default: ADC or
            the emulator's, see ``components.platform.files``).
        progress: called with (images done, images in total) after every batch.

    Returns:
        A PredictionSummary (counts, unreadable and skipped files, the model used).

    Raises:
        PredictError: the model, input or output cannot be used (nothing is predicted).
    """
    if batch_size < 1:
        raise PredictError(f"batch size must be >= 1, got {batch_size}")
    if not 0.0 <= alpha <= 1.0:
        raise PredictError(f"alpha must be in [0, 1], got {alpha}")
    if not output.strip():
        raise PredictError("--output is empty; give a folder or gs:// prefix")
    with files.gcs_client(gcs_client):
        return _predict(model, inputs, output, batch_size, alpha, cache_dir, progress)


def _predict(
    model: str,
    inputs: str,
    output: str,
    batch_size: int,
    alpha: float,
    cache_dir: str | None,
    progress: Callable[[int, int], None] | None,
) -> PredictionSummary:
    skipped: list[dict[str, str]] = []
    images = list_inputs(inputs, skipped=skipped)
    temporary = None
    if cache_dir is None:
        temporary = cache_dir = tempfile.mkdtemp(prefix="petseg-predict-")
    try:
        predictor = Predictor(resolve_model(model, cache_dir))
        failed: list[dict[str, str]] = []
        predicted = 0
        sink = _Output(output)
        sink.append(SKIPPED_FILE, skipped)
        done = 0
        reported_failures = 0
        try:
            for batch in _batches(images, batch_size, failed):
                outputs = predictor([encoded for _, encoded, _ in batch])
                rows = [
                    _write_one(sink, predictor, image, pixels, outputs, index, alpha)
                    for index, (image, _, pixels) in enumerate(batch)
                ]
                sink.append(PREDICTIONS_FILE, rows)
                sink.append(FAILED_FILE, failed[reported_failures:])
                reported_failures = len(failed)
                predicted += len(rows)
                done = predicted + len(failed)
                if progress is not None:
                    progress(done, len(images))
            sink.append(FAILED_FILE, failed[reported_failures:])
            if progress is not None and done < len(images):
                progress(len(images), len(images))
        finally:
            sink.close()
    finally:
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)
    return PredictionSummary(
        predicted=predicted,
        unreadable=len(failed),
        unreadable_files=[failure["file"] for failure in failed],
        skipped=len(skipped),
        skipped_files=[other["file"] for other in skipped],
        input=inputs,
        model=predictor.model_dir,
        classes=predictor.classes,
    )


def _write_one(
    sink: _Output,
    predictor: Predictor,
    image: InputImage,
    pixels: np.ndarray,
    outputs: dict[str, np.ndarray],
    index: int,
    alpha: float,
) -> dict[str, Any]:
    import io

    from PIL import Image

    mask_png = bytes(outputs[MASK_PNG_OUTPUT][index])
    class_ids = np.asarray(Image.open(io.BytesIO(mask_png)))
    mask_key = f"{MASKS_DIR}/{image.name}.png"
    overlay_key = f"{OVERLAYS_DIR}/{image.name}.png"
    sink.write(mask_key, mask_png)
    sink.write(
        overlay_key,
        visualize.encode_png(visualize.overlay(pixels, class_ids, predictor.palette, alpha)),
    )
    fractions = outputs["class_fractions"][index]
    return {
        "file": image.uri,
        "mask": mask_key,
        "overlay": overlay_key,
        "height": int(outputs["height"][index]),
        "width": int(outputs["width"][index]),
        "class_fractions": {
            name: round(float(value), 6)
            for name, value in zip(predictor.classes, fractions, strict=True)
        },
        "mean_confidence": round(float(outputs["mean_confidence"][index]), 6),
    }


class PredictInputs(StepInputs):
    """What to predict on, and with which model; where the predictions go.

    ``predict``: the input (a folder, glob or gs:// prefix), batch size and overlay alpha.
    ``pushed``: push's ``pushed_model``: its uri is the version's directory, its metadata
    says whether anything was pushed (``pushed``, ``skip_reason``, ``version``).
    ``output_dir``: the step's artifact directory for masks/, overlays/ and the JSON Lines.
    """

    predict: PredictConfig
    pushed: ArtifactRef
    output_dir: str


def run(inputs: PredictInputs) -> PredictionSummary:
    """The predict step: the version push just published, over ``predict.input``.

    Raises:
        PredictError: the input or the pushed model cannot be used.
    """
    settings, pushed, output_dir = inputs.predict, inputs.pushed, inputs.output_dir
    if not pushed.metadata.get("pushed"):
        why = pushed.metadata.get("skip_reason") or "push recorded no reason"
        reason = f"nothing was pushed ({why}), so there is no model to predict with"
        print(f"no predictions: {reason}")
        return PredictionSummary(
            predicted=0, unreadable=0, input=settings.input, skip_reason=reason
        )
    os.makedirs(output_dir, exist_ok=True)
    summary = predict(
        pushed.uri, settings.input, output_dir, batch_size=settings.batch_size, alpha=settings.alpha
    )
    version = pushed.metadata.get("version", "")
    print(
        f"predicted {summary.predicted} image(s) of {settings.input} with {version}; "
        f"{summary.unreadable} unreadable (failed.jsonl)"
    )
    # The step's metadata keeps the first 20 names of each list; the JSON Lines keep them all.
    return summary.model_copy(
        update={
            "unreadable_files": summary.unreadable_files[:20],
            "skipped_files": summary.skipped_files[:20],
            "model": pushed.uri,
            "version": version,
            "skip_reason": "",
        }
    )
