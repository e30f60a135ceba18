"""Reading the user's text files and replacing a folder in one step, shared by every room.

Like ``_errors``, this module imports nothing from the rooms, and every room may import it.
:func:`read_text` turns each way a file can fail to read into one :class:`UserError` line;
:func:`read_json` and :func:`read_toml` parse it too, a syntax error being one more such line.
:func:`replace_folder` is the last step of a crash-safe write: build the new folder beside the
target, then swap it in. :func:`sha256_of` fingerprints stored files (patch tensors, exports).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from spotpatch._errors import UserError

__all__ = [
    "read_text",
    "read_json",
    "read_toml",
    "write_text",
    "replace_folder",
    "staging_folder",
    "check_replaceable",
    "sha256_of",
]


def read_text(path: str | Path, *, what: str = "file") -> str:
    """The text of a UTF-8 file, or one :class:`UserError` line saying why it cannot be read.

    Args:
        path: The file.
        what: What the file is, for the message: ``"study file"``, ``"annotation file"``...

    Returns:
        The file's text.

    Raises:
        UserError: A missing file, a folder, a file the OS refuses to read, or bytes that are
            not UTF-8.

    Example:
        >>> read_text("no/such/spec.toml", what="study file")
        Traceback (most recent call last):
        ...
        spotpatch._errors.UserError: study file not found: no/such/spec.toml
    """
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{what} not found: {path}") from None
    except IsADirectoryError:
        raise UserError(f"{what} {path} is a folder, not a file") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a UTF-8 text file") from None
    except OSError as e:
        raise UserError(f"{what} {path} cannot be read ({e.strerror or e})") from None


def read_json(path: str | Path, *, what: str = "file") -> Any:
    """The parsed content of a UTF-8 JSON file; one :class:`UserError` line when it cannot be
    read (see :func:`read_text`) or is not JSON."""
    return _parse(path, what, "JSON", json.loads, json.JSONDecodeError)


def read_toml(path: str | Path, *, what: str = "file") -> dict[str, Any]:
    """The parsed content of a UTF-8 TOML file; one :class:`UserError` line when it cannot be
    read (see :func:`read_text`) or is not TOML."""
    return _parse(path, what, "TOML", tomllib.loads, tomllib.TOMLDecodeError)


def _parse(path, what: str, syntax: str, loads, error: type[Exception]) -> Any:
    text = read_text(path, what=what)
    try:
        return loads(text)
    except error as e:
        where = f" at line {e.lineno}" if isinstance(e, json.JSONDecodeError) else ""
        detail = e.msg if isinstance(e, json.JSONDecodeError) else str(e)
        raise UserError(f"{path}: malformed {syntax} ({detail}{where})") from None


def write_text(path: str | Path, text: str, *, what: str = "--out") -> Path:
    """Write a UTF-8 file crash-safely (beside it, then renamed into place); returns its path.

    Raises:
        UserError: ``path`` is a folder, its folder does not exist, or it cannot be written.
    """
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{what} is a folder, not a file: {path}")
    if not path.parent.is_dir():
        raise UserError(f"folder not found for {what}: {path.parent}")
    staged = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        staged.write_text(text, encoding="utf-8")
        os.replace(staged, path)
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror or e}") from None
    finally:
        staged.unlink(missing_ok=True)
    return path


def sha256_of(data: bytes | str | Path) -> str:
    """The sha256 (hex) of bytes, or of a file's bytes when given a path.

    Example:
        >>> sha256_of(b"")[:12]
        'e3b0c44298fc'
    """
    if isinstance(data, bytes):
        return hashlib.sha256(data).hexdigest()
    digest = hashlib.sha256()
    with open(data, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def check_replaceable(out: Path, *, ours: Callable[[Path], bool], kind: str) -> None:
    """Refuse an ``--out`` folder that is not missing, empty or an earlier ``kind`` that
    ``ours`` recognizes (replacing anything else would lose it).

    Raises:
        UserError: ``out`` is a file, or a folder of something else, in one line.
    """
    if not out.exists():
        return
    if not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder")
    if any(out.iterdir()) and not ours(out):
        raise UserError(
            f"--out {out} is not empty and is not a spotpatch {kind}; "
            f"give a new folder (an earlier {kind} there would be replaced)"
        )


@contextmanager
def staging_folder(target: Path, *, what: str = "--out") -> Iterator[Path]:
    """A temporary folder beside ``target`` (its parent made if missing), removed on exit:
    where a folder is built before :func:`replace_folder` swaps it in.

    Raises:
        UserError: ``target``'s folder cannot be made or written (a read-only mount, no
            permission), in one line.
    """
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = tempfile.TemporaryDirectory(prefix=f".{target.name}.", dir=target.parent)
    except OSError as e:
        raise UserError(f"cannot write {what} {target}: {e.strerror or e}") from None
    with tmp as folder:
        yield Path(folder)


def replace_folder(staged: Path, target: Path, *, aside: Path | None = None) -> None:
    """Put the folder ``staged`` at ``target``, replacing whatever ``target`` was.

    A previous ``target`` is first renamed to ``aside``, then ``staged`` is renamed to
    ``target``; when that rename fails, the previous ``target`` is renamed back before the error
    propagates. Only once the new folder is in place is the previous one removed. Renames are
    atomic only within one file system, so ``staged`` and ``aside`` should sit beside
    ``target`` (or at least on its file system).

    Args:
        staged: The complete new folder.
        target: Where it goes; a folder, a file or nothing.
        aside: Where the previous ``target`` waits while ``staged`` moves in (default: a hidden
            name beside ``target``). Anything already there is removed first: a leftover of an
            earlier process that was killed.
    """
    if not target.exists() and not target.is_symlink():
        os.replace(staged, target)
        return
    if aside is None:
        aside = target.with_name(f".{target.name}.old-{os.getpid()}")
    if aside.exists() or aside.is_symlink():
        _remove(aside)
    os.replace(target, aside)
    try:
        os.replace(staged, target)
    except BaseException:
        if not target.exists():
            os.replace(aside, target)
        raise
    _remove(aside)
