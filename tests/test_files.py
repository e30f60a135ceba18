"""Reading the user's files and replacing a folder: the shared helpers and every reader on them."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from spotpatch import UserError
from spotpatch._files import read_text, replace_folder

NOT_UTF8 = b'{"name": "caf\xe9"}'


def test_read_text_reads_utf8(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("café ✓", encoding="utf-8")
    assert read_text(tmp_path / "a.txt") == "café ✓"


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: None, "study file not found: "),
        (lambda p: p.mkdir(), "is a folder, not a file"),
        (lambda p: p.write_bytes(NOT_UTF8), "not a UTF-8 text file"),
    ],
)
def test_read_text_refuses_in_one_line(
    tmp_path: Path, make: Callable[[Path], None], message: str
) -> None:
    path = tmp_path / "s.toml"
    make(path)
    with pytest.raises(UserError, match=message) as info:
        read_text(path, what="study file")
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_read_text_refuses_an_unreadable_file(tmp_path: Path, monkeypatch) -> None:
    # The OS refuses the read (root reads any file whatever its mode, so refuse it here).
    path = tmp_path / "locked.json"
    path.write_text("{}")

    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_text", refuse)
    with pytest.raises(UserError, match="cannot be read \\(Permission denied\\)"):
        read_text(path, what="config file")


def _spec(path: Path) -> object:
    from spotpatch.studies import load_spec

    return load_spec(path)


def _config(path: Path) -> object:
    from spotpatch.studies import read_config

    return read_config(path, None)  # the file fails to read before the space is used


def _annotations(path: Path) -> object:
    from spotpatch.evaluators import load_split

    return load_split(path, path.parent, resize=lambda w, h: (w, h), progress=False)


def _patch(path: Path) -> object:
    from spotpatch.spaces import load_patch

    (path.parent / "patch.safetensors").write_bytes(b"junk")
    return load_patch(path.parent)


# reader, file name, message on a missing file
READERS = {
    "study file": (_spec, "s.toml", "study file not found"),
    "config file": (_config, "c.json", "config file not found"),
    "annotation file": (_annotations, "train.json", "annotation file not found"),
    "patch file": (_patch, "patch.json", "not a patch folder"),
}


@pytest.mark.parametrize("what", READERS)
def test_every_reader_refuses_a_missing_file(tmp_path: Path, what: str) -> None:
    reader, name, message = READERS[what]
    with pytest.raises(UserError, match=message):
        reader(tmp_path / name)


@pytest.mark.parametrize("what", READERS)
def test_every_reader_refuses_a_file_that_is_not_utf8(tmp_path: Path, what: str) -> None:
    reader, name, _ = READERS[what]
    (tmp_path / name).write_bytes(NOT_UTF8)
    with pytest.raises(UserError, match="not a UTF-8 text file") as info:
        reader(tmp_path / name)
    assert "\n" not in str(info.value)


def _folder(path: Path, text: str) -> Path:
    path.mkdir()
    (path / "f.txt").write_text(text)
    return path


def test_replace_folder_moves_in_where_nothing_was(tmp_path: Path) -> None:
    replace_folder(_folder(tmp_path / "new", "new"), tmp_path / "out")
    assert (tmp_path / "out" / "f.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize("previous", ["folder", "empty folder", "file"])
def test_replace_folder_replaces_and_removes_the_previous(tmp_path: Path, previous: str) -> None:
    target = tmp_path / "out"
    if previous == "folder":
        _folder(target, "old")
    elif previous == "empty folder":
        target.mkdir()
    else:
        target.write_text("old")
    replace_folder(_folder(tmp_path / "new", "new"), target)
    assert (target / "f.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_replace_folder_removes_a_leftover_aside(tmp_path: Path) -> None:
    target = _folder(tmp_path / "out", "old")
    aside = _folder(tmp_path / "aside", "killed")
    replace_folder(_folder(tmp_path / "new", "new"), target, aside=aside)
    assert (target / "f.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_replace_folder_restores_the_previous_when_the_rename_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = _folder(tmp_path / "out", "old")
    staged = _folder(tmp_path / "new", "new")
    real = os.replace

    def failing(src: os.PathLike, dst: os.PathLike) -> None:
        if Path(src) == staged:
            raise OSError("disk full")
        real(src, dst)

    monkeypatch.setattr("spotpatch._files.os.replace", failing)
    with pytest.raises(OSError, match="disk full"):
        replace_folder(staged, target)
    assert (target / "f.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new", "out"]
