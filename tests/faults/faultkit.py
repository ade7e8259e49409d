"""Tools the faults suite injects faults with: a tamperable TFDS source, a cuttable network link.

Nothing here mocks petseg itself. Bad data is written into a prepared TFDS dataset
(the files TFDS reads), so ingest meets it exactly where the real Oxford set would put
it; a GCS outage is a relay in front of a real emulator that drops its connections.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import socket
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from components.platform.config import DataConfig

SOURCE_TRAIN = 6
SOURCE_TEST = 3
SOURCE_IMAGE_SIZE = 48


def encode(image: Image.Image, image_format: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format)
    return buffer.getvalue()


def source_config(data_dir: Path, **overrides) -> DataConfig:
    """A tiny synthetic_pets source in data_dir (generated offline on first use)."""
    settings = {
        "data_dir": str(data_dir),
        "synthetic_train_size": SOURCE_TRAIN,
        "synthetic_test_size": SOURCE_TEST,
        "synthetic_image_size": SOURCE_IMAGE_SIZE,
        "records_per_shard": 4,
        "download": False,
        # Six train records: a large share, so the carved validation split is not empty.
        "validation_fraction": 0.4,
    }
    return DataConfig(**{**settings, **overrides})


def prepare_source(data_dir: Path) -> DataConfig:
    from components.data import sources

    config = source_config(data_dir, download=True)
    sources.prepare(config)
    return source_config(data_dir)


def copy_source(prepared: DataConfig, data_dir: Path, **overrides) -> DataConfig:
    """A private copy of a prepared source, which a test may damage."""
    shutil.copytree(prepared.data_dir, data_dir)
    return source_config(data_dir, **overrides)


def _builder_dir(config: DataConfig) -> Path:
    from components.data import sources

    return Path(str(sources.get_builder(config).data_dir))


def _split_files(config: DataConfig, split: str) -> list[Path]:
    return sorted(_builder_dir(config).glob(f"*-{split}.tfrecord-*"))


def source_examples(config: DataConfig, split: str) -> list:
    """The split's stored tf.train.Examples, in file order."""
    import tensorflow as tf

    return [
        tf.train.Example.FromString(record.numpy())
        for path in _split_files(config, split)
        for record in tf.data.TFRecordDataset(str(path))
    ]


def file_names(config: DataConfig, split: str) -> list[str]:
    return [
        example.features.feature["file_name"].bytes_list.value[0].decode()
        for example in source_examples(config, split)
    ]


def feature_bytes(example, name: str) -> bytes:
    return example.features.feature[name].bytes_list.value[0]


def tamper_source(
    config: DataConfig,
    split: str,
    file_name: str,
    change: Callable[[bytes, bytes], tuple[bytes, bytes]],
) -> None:
    """Rewrites one source record's encoded image and mask: change(image, mask) -> new pair.

    The record count is unchanged, so TFDS reads the files as it would any prepared split.
    """
    import tensorflow as tf

    found = False
    for path in _split_files(config, split):
        examples = [
            tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(str(path))
        ]
        for example in examples:
            features = example.features.feature
            if features["file_name"].bytes_list.value[0].decode() != file_name:
                continue
            image, mask = change(
                feature_bytes(example, "image"), feature_bytes(example, "segmentation_mask")
            )
            features["image"].bytes_list.value[0] = image
            features["segmentation_mask"].bytes_list.value[0] = mask
            found = True
        with tf.io.TFRecordWriter(str(path)) as writer:
            for example in examples:
                writer.write(example.SerializeToString())
    if not found:
        raise KeyError(f"{file_name} is not in the {split} split of {config.data_dir}")


def empty_source_split(config: DataConfig, split: str) -> None:
    """Makes a prepared split hold no records, files and TFDS metadata alike."""
    import tensorflow as tf

    for path in _split_files(config, split):
        with tf.io.TFRecordWriter(str(path)):
            pass
    info_path = _builder_dir(config) / "dataset_info.json"
    info = json.loads(info_path.read_text())
    for entry in info["splits"]:
        if entry["name"] == split:
            entry["shardLengths"] = ["0" for _ in entry["shardLengths"]]
            entry["numBytes"] = "0"
    info_path.write_text(json.dumps(info))


def decode_array(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


# --- a network link that can go down ------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class CuttableLink:
    """A TCP relay to a server that can drop every connection mid-stream and refuse new ones.

    ``cut_after(n)`` arms it: once n more bytes have gone from clients to the server,
    every open connection is reset and the port stops listening (connection refused),
    as when a server or the network path to it goes away. ``restore()`` listens again
    on the same port. Counting request bytes makes the cut land at the same point of
    a push every run, mid-upload, with no timing involved.
    """

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.port = free_port()
        self.cut_event = threading.Event()
        self._lock = threading.Lock()
        self._connections: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self._budget: int | None = None
        self._down = False

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        with self._lock:
            self._listener = listener
            self._down = False
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    restore = start

    def cut_after(self, num_bytes: int) -> None:
        with self._lock:
            self._budget = num_bytes
            self.cut_event.clear()

    def stop(self) -> None:
        self._cut()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            with self._lock:
                if self._down:
                    client.close()
                    continue
                try:
                    server = socket.create_connection(("127.0.0.1", self.target_port))
                except OSError:
                    client.close()
                    continue
                self._connections += [client, server]
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, upstream: bool) -> None:
        try:
            while True:
                chunk = source.recv(65536)
                if not chunk:
                    break
                if upstream and self._spend(len(chunk)):
                    self._cut()
                    return
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            if not self._down:  # an ordinary end of a connection: pass the FIN on
                for end in (source, sink):
                    with contextlib.suppress(OSError):
                        end.shutdown(socket.SHUT_RDWR)

    def _spend(self, num_bytes: int) -> bool:
        with self._lock:
            if self._budget is None:
                return False
            self._budget -= num_bytes
            return self._budget <= 0

    def _cut(self) -> None:
        with self._lock:
            self._down = True
            self._budget = None
            listener, self._listener = self._listener, None
            connections, self._connections = self._connections, []
        if listener is not None:
            listener.close()
        # Abortive close: both ends see the connection reset mid-request, not a clean end
        # (a clean end would let the server take a cut-short upload body as complete).
        # SHUT_RD first wakes the relay's own threads blocked on these sockets; a socket
        # closed while a thread still blocks on it would stay open in the kernel.
        linger_zero = struct.pack("ii", 1, 0)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger_zero)
                connection.shutdown(socket.SHUT_RD)
        time.sleep(0.05)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.close()
        self.cut_event.set()


def write_model_files(path: Path, seed: int, file_size: int = 64 * 1024) -> Path:
    """A model directory as push sees it: push copies and checksums files, never loads them."""
    path.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    (path / "model.keras").write_bytes(rng.bytes(file_size))
    (path / "saved_model" / "variables").mkdir(parents=True)
    (path / "saved_model" / "saved_model.pb").write_bytes(rng.bytes(file_size))
    (path / "saved_model" / "variables" / "variables.data-00000-of-00001").write_bytes(
        rng.bytes(file_size)
    )
    (path / "summary.txt").write_text(f"model {seed}\n")
    (path / "metadata.json").write_text(
        json.dumps({"classes": ["pet", "background", "border"], "image_size": 64, "seed": seed})
    )
    return path


def files_of(directory: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(directory)): path.read_bytes()
        for path in sorted(Path(directory).rglob("*"))
        if path.is_file() and path.name not in ("manifest.json", ".claim")
    }


# --- models -------------------------------------------------------------------------------

CLASSES = ["pet", "background", "border"]


def write_pixel_model(
    model_dir: Path,
    image_size: int = 32,
    *,
    seed: int = 0,
    extra_layer=None,
    normalization: str = "tutorial",
) -> Path:
    """A Model artifact as evaluate reads it: model.keras (1x1 conv, 3 logits) + metadata.json.

    ``extra_layer`` is inserted after the normalisation (the loading-safety tests put a
    Lambda there). The weights are drawn from ``seed``, so two calls give the same model.
    """
    import keras

    from components.model import model as model_lib

    scale, offset = model_lib.NORMALIZATIONS[normalization]
    inputs = keras.Input(shape=(image_size, image_size, 3), name="image")
    x = keras.layers.Rescaling(scale, offset, name=model_lib.NORMALIZATION_LAYER)(inputs)
    if extra_layer is not None:
        x = extra_layer(x)
    logits = keras.layers.Conv2D(len(CLASSES), 1, name="logits")(x)
    model = keras.Model(inputs, logits)
    rng = np.random.default_rng(seed)
    kernel = rng.normal(0.0, 1.0, size=(1, 1, 3, len(CLASSES))).astype(np.float32)
    model.get_layer("logits").set_weights([kernel, np.zeros(len(CLASSES), np.float32)])
    model_dir.mkdir(parents=True, exist_ok=True)
    model.save(model_dir / model_lib.MODEL_FILE)
    metadata = {
        "classes": CLASSES,
        "image_size": image_size,
        "normalization": normalization,
        "encoder_weights": "none",
    }
    (model_dir / model_lib.METADATA_FILE).write_text(json.dumps(metadata))
    return model_dir
