"""The training backup is replaced only by a complete one: a kill mid-write keeps the last."""

from __future__ import annotations

import errno
import json

import keras
import numpy as np
import pytest

from components.model.distributed import AtomicBackupAndRestore, Cluster, backup_callback


def _model() -> keras.Model:
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    model.compile(loss="mse")
    return model


def test_a_write_killed_midway_leaves_the_previous_backup_whole(tmp_path, monkeypatch):
    callback = backup_callback(str(tmp_path / "backup"), Cluster())
    assert isinstance(callback, AtomicBackupAndRestore)
    model = _model()
    callback.set_model(model)
    callback._current_epoch = 3
    callback._save_model()
    saved = (tmp_path / "backup" / "latest.weights.h5").read_bytes()
    weights = [w.copy() for w in model.get_weights()]

    def killed_mid_write(filepath, overwrite=True):
        with open(filepath, "wb") as handle:
            handle.write(saved[: len(saved) // 10])  # what a SIGKILL mid-write leaves
        raise KeyboardInterrupt

    model.set_weights([w + 1 for w in weights])
    callback._current_epoch = 4
    monkeypatch.setattr(model, "save_weights", killed_mid_write)
    with pytest.raises(KeyboardInterrupt):
        callback._save_model()

    assert (tmp_path / "backup" / "latest.weights.h5").read_bytes() == saved
    metadata = json.loads((tmp_path / "backup" / "training_metadata.json").read_text())
    assert metadata["epoch"] == 3
    fresh = _model()
    restore = backup_callback(str(tmp_path / "backup"), Cluster())
    restore.set_model(fresh)
    restore.on_train_begin()
    for restored, expected in zip(fresh.get_weights(), weights, strict=True):
        np.testing.assert_array_equal(restored, expected)


def test_a_write_that_runs_out_of_space_removes_its_partial_file(tmp_path, monkeypatch):
    callback = backup_callback(str(tmp_path / "backup"), Cluster())
    model = _model()
    callback.set_model(model)
    callback._current_epoch = 1
    callback._save_model()
    saved = (tmp_path / "backup" / "latest.weights.h5").read_bytes()

    def disk_full(filepath, overwrite=True):
        with open(filepath, "wb") as handle:
            handle.write(saved[: len(saved) // 2])
        raise OSError(errno.ENOSPC, "No space left on device", filepath)

    monkeypatch.setattr(model, "save_weights", disk_full)
    callback._current_epoch = 2
    with pytest.raises(OSError, match="No space left"):
        callback._save_model()
    assert sorted(path.name for path in (tmp_path / "backup").iterdir()) == [
        "latest.weights.h5",
        "training_metadata.json",
    ]
    assert (tmp_path / "backup" / "latest.weights.h5").read_bytes() == saved
