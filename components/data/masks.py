"""Raw masks → class ids through the class table, and the per-record checks of ingest.

A mask in the wild is one of three kinds, told apart by its PIL mode unless
``data.mask_format`` insists on one:

- single-channel values (mode L, I;16, I): each value maps to a class;
- palette PNGs (mode P, Pascal VOC style): read by palette *index*, never
  converted to RGB first (two indices may share a colour, and 255 = void);
- RGB colour masks from labelling tools (mode RGB, RGBA with alpha ignored):
  each colour maps to a class through the table's colours.

Values or colours the table does not list stop the record (a bad record
naming the file and the value), so a typo in the table never silently turns
a class into another. Ignored values/colours become ``IGNORE_ID``.

This module imports NumPy and PIL only (no TensorFlow), so a tool that only checks
masks starts in a fraction of a second.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import re
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from components.platform.config import IGNORE_ID, DataConfig

# Formats TensorFlow's decode_image reads (MPO is a camera JPEG with extra frames).
TF_IMAGE_FORMATS = frozenset({"JPEG", "MPO", "PNG", "GIF", "BMP"})
_VALUE_MODES = frozenset({"1", "L", "I", "I;16", "I;16B", "I;16L", "LA"})
_MAX_LISTED = 8
_UNMAPPED = -1


class RecordError(ValueError):
    """One record cannot be used; ``reason`` says why (ingest adds the file name)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _listed(items: list[Any]) -> str:
    shown = ", ".join(str(item) for item in items[:_MAX_LISTED])
    more = f" and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else ""
    return f"[{shown}{more}]"


def _pack(colours: np.ndarray) -> np.ndarray:
    colours = colours.astype(np.uint32)
    return (colours[..., 0] << 16) | (colours[..., 1] << 8) | colours[..., 2]


def _hex(packed: int) -> str:
    return f"#{int(packed):06x}"


@dataclasses.dataclass(frozen=True)
class ClassTable:
    """The class table as lookups: raw value → class id, packed RGB → class id."""

    names: tuple[str, ...]
    value_lut: np.ndarray  # int16 [65536]; class id, IGNORE_ID, or -1 (unmapped)
    colour_keys: np.ndarray  # uint32, sorted packed RGB
    colour_ids: np.ndarray  # int16, class id (or IGNORE_ID) of each key
    mask_format: str = "auto"

    @classmethod
    def from_config(cls, data_config: DataConfig) -> ClassTable:
        return cls.from_table(data_config.class_table(), data_config.mask_format)

    @classmethod
    def from_table(cls, table: dict[str, Any], mask_format: str = "auto") -> ClassTable:
        """Builds the lookups from dataset.json's ``class_table`` (DataConfig.class_table())."""
        value_lut = np.full(1 << 16, _UNMAPPED, np.int16)
        colours: dict[int, int] = {}
        for class_id, spec in enumerate(table["classes"]):
            value_lut[list(spec.get("values", []))] = class_id
            for colour in spec.get("colors", []):
                colours[int(_pack(np.asarray(colour)))] = class_id
        value_lut[list(table.get("ignore_values", []))] = IGNORE_ID
        for colour in table.get("ignore_colors", []):
            colours[int(_pack(np.asarray(colour)))] = IGNORE_ID
        keys = np.array(sorted(colours), np.uint32)
        return cls(
            names=tuple(spec["name"] for spec in table["classes"]),
            value_lut=value_lut,
            colour_keys=keys,
            colour_ids=np.array([colours[int(key)] for key in keys], np.int16),
            mask_format=mask_format,
        )

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def map_values(self, values: np.ndarray, mask_name: str) -> np.ndarray:
        """[H, W] raw values (or palette indices) → uint8 class ids."""
        if values.size and (values.min() < 0 or values.max() >= self.value_lut.size):
            bad = np.unique(values[(values < 0) | (values >= self.value_lut.size)])
            raise RecordError(f"mask {mask_name} has values {_listed(bad.tolist())} out of range")
        ids = self.value_lut[values]
        unmapped = ids == _UNMAPPED
        if unmapped.any():
            bad = np.unique(values[unmapped]).tolist()
            raise RecordError(
                f"mask {mask_name} has values {_listed(bad)} not in the class table "
                f"(data.classes / data.ignore_values)"
            )
        return ids.astype(np.uint8)

    def map_colours(self, rgb: np.ndarray, mask_name: str) -> np.ndarray:
        """[H, W, 3] colours → uint8 class ids."""
        packed = _pack(rgb)
        if self.colour_keys.size == 0:
            raise RecordError(
                f"mask {mask_name} is an RGB colour mask but the class table has no colours "
                "(give data.classes[].colors, or data.mask_format=values for grey masks)"
            )
        index = np.minimum(np.searchsorted(self.colour_keys, packed), self.colour_keys.size - 1)
        found = self.colour_keys[index] == packed
        if not found.all():
            bad = [_hex(value) for value in np.unique(packed[~found]).tolist()]
            raise RecordError(
                f"mask {mask_name} has colours {_listed(bad)} not in the class table "
                "(data.classes[].colors / data.ignore_colors)"
            )
        return self.colour_ids[index].astype(np.uint8)

    def to_class_ids(self, mask_bytes: bytes, mask_name: str) -> np.ndarray:
        """Decodes an encoded mask and maps it to [H, W] uint8 class ids.

        Raises:
            RecordError: the mask does not decode, is of the wrong kind, or holds a
                value or colour the table does not list; the reason names the mask.
        """
        try:
            with Image.open(io.BytesIO(mask_bytes)) as image:
                image.load()
                mode = image.mode
                kind = self.mask_format
                if kind == "auto":
                    kind = {"P": "palette", "RGB": "rgb", "RGBA": "rgb"}.get(mode, "values")
                if kind == "palette":
                    if mode != "P":
                        raise RecordError(
                            f"mask {mask_name} is not a palette PNG (PIL mode {mode}) but "
                            "data.mask_format is 'palette'"
                        )
                    return self.map_values(np.asarray(image), mask_name)
                if kind == "rgb":
                    if mode not in ("RGB", "RGBA", "P"):
                        raise RecordError(
                            f"mask {mask_name} has PIL mode {mode}, not RGB, but "
                            "data.mask_format is 'rgb'"
                        )
                    # An explicit 'rgb' reads a palette PNG by its colours, as asked.
                    return self.map_colours(np.asarray(image.convert("RGB")), mask_name)
                return self.map_values(_values(image, mask_name), mask_name)
        except RecordError:
            raise
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as error:
            reason = _decode_error(error, mask_bytes)
            raise RecordError(f"mask {mask_name} does not decode ({reason})") from None


# Pillow names the stream it read in its messages ("cannot identify image file
# <_io.BytesIO object at 0x7f...>"): a memory address, meaningless to the reader.
_OBJECT_REPR = re.compile(r"\s*<[\w.]+ object at 0x[0-9a-fA-F]+>")


def _decode_error(error: BaseException, data: bytes) -> str:
    """Why Pillow could not decode ``data``, in words (no object reprs)."""
    if not data:
        return "empty file, 0 bytes"
    message = _OBJECT_REPR.sub("", str(error)).strip()
    if isinstance(error, UnidentifiedImageError):
        return f"{message or 'cannot identify image file'}: not an image format Pillow reads"
    return message or type(error).__name__


def _values(image: Image.Image, mask_name: str) -> np.ndarray:
    """Single-channel values of a 'values' mask; a grey RGB mask gives its one channel."""
    mode = image.mode
    if mode == "P" or mode in _VALUE_MODES:
        array = np.asarray(image)
        array = array[..., 0] if array.ndim == 3 else array
        # Mode '1' gives booleans, which would index the lookup table as a mask.
        return array.astype(np.uint8) if array.dtype == bool else array
    if mode in ("RGB", "RGBA"):
        rgb = np.asarray(image)[..., :3]
        if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
            return rgb[..., 0]
        raise RecordError(
            f"mask {mask_name} is RGB with colours, but data.mask_format is 'values'; "
            "use 'rgb' (or 'auto') with colours in data.classes"
        )
    raise RecordError(f"mask {mask_name} has PIL mode {mode}, which holds no class values")


def image_size(image_bytes: bytes) -> tuple[int, int]:
    """Decodes an image fully (catching truncation) and returns (height, width).

    Raises:
        RecordError: it does not decode, or TensorFlow could not decode its format.
    """
    try:
        with Image.open(io.BytesIO(image_bytes)) as image:
            image_format = image.format
            image.load()
            width, height = image.size
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as error:
        raise RecordError(f"image does not decode ({_decode_error(error, image_bytes)})") from None
    except Image.DecompressionBombError as error:
        raise RecordError(f"image does not decode ({error})") from None
    if image_format not in TF_IMAGE_FORMATS:
        raise RecordError(
            f"image does not decode (format {image_format}; TensorFlow reads "
            f"{', '.join(sorted(TF_IMAGE_FORMATS))})"
        )
    return height, width


def encode_png(class_ids: np.ndarray) -> bytes:
    """PNG of a [H, W] uint8 class-id mask (lossless; the stored mask)."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(class_ids, dtype=np.uint8)).save(
        buffer, format="PNG", compress_level=1
    )
    return buffer.getvalue()


def record_digest(key: str, image_bytes: bytes, mask_bytes: bytes) -> bytes:
    """A record's content identity: its key and the bytes of its image and mask."""
    digest = hashlib.sha256()
    digest.update(key.encode("utf-8"))
    digest.update(b"\0")
    digest.update(hashlib.sha256(image_bytes).digest())
    digest.update(hashlib.sha256(mask_bytes).digest())
    return digest.digest()


def image_digest(image_bytes: bytes) -> bytes:
    """The identity duplicate images are found by (BLAKE2b-128 of the encoded bytes)."""
    return hashlib.blake2b(image_bytes, digest_size=16).digest()


@dataclasses.dataclass(frozen=True)
class CheckedRecord:
    """What a worker hands back for a good record."""

    mask_png: bytes
    height: int
    width: int
    digest: bytes
    image_digest: bytes
    pixel_counts: np.ndarray  # int64 [256]: pixels per stored id (class ids, IGNORE_ID)


def check_record(
    table: ClassTable, key: str, image_bytes: bytes, mask_bytes: bytes, mask_name: str
) -> CheckedRecord:
    """Checks one record (image decodes, mask maps, sizes agree) and encodes its mask.

    Raises:
        RecordError: the reason names what is wrong (and the mask file for mask problems).
    """
    height, width = image_size(image_bytes)
    class_ids = table.to_class_ids(mask_bytes, mask_name)
    if class_ids.shape != (height, width):
        raise RecordError(
            f"image is {height}x{width} but its mask is {class_ids.shape[0]}x{class_ids.shape[1]} "
            "(height x width)"
        )
    return CheckedRecord(
        mask_png=encode_png(class_ids),
        height=height,
        width=width,
        digest=record_digest(key, image_bytes, mask_bytes),
        image_digest=image_digest(image_bytes),
        pixel_counts=np.bincount(class_ids.ravel(), minlength=256).astype(np.int64),
    )


def short_reason(reason: str) -> str:
    # Records without their own mask file are named once, not twice ("mask  has...").
    return reason.replace("mask  ", "mask ")


def check_chunk(
    items: list[tuple[str, bytes, bytes, str]], table: ClassTable
) -> list[CheckedRecord | str]:
    """Checks a chunk of (key, image, mask, mask name); a bad record gives its reason."""
    results: list[CheckedRecord | str] = []
    for key, image, mask, mask_name in items:
        try:
            results.append(check_record(table, key, image, mask, mask_name))
        except RecordError as error:
            results.append(short_reason(error.reason))
    return results
