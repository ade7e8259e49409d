"""Data statistics travel with a pushed model, and the next run reads the latest ones back."""

from __future__ import annotations

import pytest

from components.publish.push import ChecksumMismatchError, push_model, read_latest_file
from tests.test_push_local import make_model_dir

STATS = "data/statistics.json"


def test_extra_files_are_published_and_read_back_from_latest(tmp_path):
    destination = tmp_path / "dest"
    assert read_latest_file(str(destination), STATS) is None  # nothing pushed yet

    plain = push_model(str(make_model_dir(tmp_path / "m0", 0)), str(destination), run_id="r0")
    assert read_latest_file(str(destination), STATS) is None  # pushed before statistics existed

    stats = tmp_path / "statistics.json"
    stats.write_text('{"splits": {}}')
    result = push_model(
        str(make_model_dir(tmp_path / "m1", 1)),
        str(destination),
        run_id="r1",
        extra_files={STATS: str(stats)},
    )
    assert result["version"] == "v000002" and plain["version"] == "v000001"
    assert (destination / "versions" / "v000002" / STATS).read_text() == '{"splits": {}}'
    content, uri = read_latest_file(str(destination), STATS)
    assert content == b'{"splits": {}}' and uri == str(destination / "versions" / "v000002")

    (destination / "versions" / "v000002" / STATS).write_text('{"splits": {"x": 1}}')
    with pytest.raises(ChecksumMismatchError, match=r"v000002/data/statistics\.json"):
        read_latest_file(str(destination), STATS)


def test_extra_files_may_not_replace_model_files_or_escape(tmp_path):
    model = make_model_dir(tmp_path / "m", 0)
    other = tmp_path / "x.json"
    other.write_text("{}")
    with pytest.raises(ValueError, match=r"replace files of the model: \['metadata.json'\]"):
        push_model(
            str(model), str(tmp_path / "d"), run_id="r", extra_files={"metadata.json": str(other)}
        )
    with pytest.raises(ValueError, match="unsafe path"):
        push_model(str(model), str(tmp_path / "d"), run_id="r", extra_files={"../x": str(other)})
    with pytest.raises(FileNotFoundError, match="no file"):
        push_model(str(model), str(tmp_path / "d"), run_id="r", extra_files={STATS: str(tmp_path)})
    assert not (tmp_path / "d" / "LATEST").exists()
