"""Input files: which files under a folder are images, and what a command was given."""

from __future__ import annotations

from pathlib import Path

import pytest

from pneumoscan.inputs import expand_inputs, find_images


def test_find_images_is_recursive_sorted_and_skips_the_rest(tmp_path: Path) -> None:
    (tmp_path / "b" / "deep").mkdir(parents=True)
    (tmp_path / ".hidden").mkdir()
    for name in ("b/deep/z.JPEG", "a.png", "b/c.dcm", "notes.txt", ".DS_Store",
                 ".hidden/x.png", "b/y.jpg"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "IM0001").write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 10)  # no suffix
    (tmp_path / "README").write_bytes(b"hello")
    found = [p.relative_to(tmp_path).as_posix() for p in find_images(tmp_path)]
    assert found == ["IM0001", "a.png", "b/c.dcm", "b/y.jpg", "b/deep/z.JPEG"]


def test_expand_inputs_names_and_missing(tmp_path: Path) -> None:
    (tmp_path / "d" / "s").mkdir(parents=True)
    (tmp_path / "d" / "s" / "x.png").write_bytes(b"x")
    (tmp_path / "f.jpeg").write_bytes(b"x")
    pairs = list(expand_inputs([tmp_path / "f.jpeg", tmp_path / "d"]))
    assert [name for _, name in pairs] == ["f.jpeg", "s/x.png"]
    with pytest.raises(FileNotFoundError, match="nope"):
        list(expand_inputs([tmp_path / "nope"]))
