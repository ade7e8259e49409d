"""components.platform.files: one layer for bytes, text and JSON, with atomic writes."""

import json

import pytest

from components.platform import files


def test_write_and_read_back_bytes_text_and_json_creating_folders(tmp_path):
    folder = tmp_path / "a" / "b"
    files.write_bytes(str(folder / "blob.bin"), b"\x00\xffdata")
    files.write_text(str(folder / "note.txt"), "grüße\n")
    files.write_json(str(folder / "facts.json"), {"b": 1, "a": [1.5, None]})

    assert files.read_bytes(str(folder / "blob.bin")) == b"\x00\xffdata"
    assert files.read_text(str(folder / "note.txt")) == "grüße\n"
    assert files.read_json(str(folder / "facts.json")) == {"a": [1.5, None], "b": 1}
    # Indented, keys sorted, newline at the end: the layout every JSON file of the project has.
    assert (
        folder / "facts.json"
    ).read_text() == '{\n  "a": [\n    1.5,\n    null\n  ],\n  "b": 1\n}\n'
    assert files.listdir(str(folder)) == ["blob.bin", "facts.json", "note.txt"]
    assert files.glob(str(folder / "*.json")) == [str(folder / "facts.json")]
    assert files.exists(str(folder / "note.txt")) and not files.exists(str(folder / "nope"))
    assert files.size(str(folder / "blob.bin")) == 6


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "facts.json"
    files.write_json(str(target), {"version": 1})

    with pytest.raises(ValueError):
        files.write_json(str(target), {"loss": float("nan")}, allow_nan=False)
    with pytest.raises(TypeError):
        files.write_json(str(target), {"not json": object()})

    assert json.loads(target.read_text()) == {"version": 1}
    assert sorted(path.name for path in tmp_path.iterdir()) == ["facts.json"]


def test_overwrite_replaces_the_whole_file(tmp_path):
    target = str(tmp_path / "x.txt")
    files.write_text(target, "a long first version")
    files.write_text(target, "short")
    assert files.read_text(target) == "short"


def test_read_errors_name_the_file(tmp_path):
    missing = str(tmp_path / "missing.json")
    with pytest.raises(FileNotFoundError, match=r"missing\.json does not exist"):
        files.read_json(missing)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(files.FileFormatError, match=r"broken\.json: not JSON"):
        files.read_json(str(broken))
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    with pytest.raises(
        files.FileFormatError, match=r"list\.json: expected a JSON object, got list"
    ):
        files.read_json(str(listed))


def test_remove_takes_files_and_folders_and_ignores_missing(tmp_path):
    files.write_text(str(tmp_path / "d" / "e" / "f.txt"), "x")
    files.write_text(str(tmp_path / "g.txt"), "x")
    files.remove(str(tmp_path / "d"))
    files.remove(str(tmp_path / "g.txt"))
    files.remove(str(tmp_path / "never"))
    assert list(tmp_path.iterdir()) == []


def test_rename_replaces_the_target(tmp_path):
    files.write_text(str(tmp_path / "a.partial"), "new")
    files.write_text(str(tmp_path / "a"), "old")
    files.rename(str(tmp_path / "a.partial"), str(tmp_path / "a"))
    assert files.listdir(str(tmp_path)) == ["a"] and files.read_text(str(tmp_path / "a")) == "new"


def test_list_files_walks_folders_in_order(tmp_path):
    for name in ("b/2.txt", "a/1.txt", "a/z/3.txt", "top.txt"):
        files.write_text(str(tmp_path / name), name)
    assert files.list_files(str(tmp_path)) == ["a/1.txt", "a/z/3.txt", "b/2.txt", "top.txt"]


def test_is_remote_tells_object_stores_from_local_paths():
    assert files.is_remote("gs://bucket/x")
    assert not files.is_remote("/tmp/x") and not files.is_remote("relative/x")
