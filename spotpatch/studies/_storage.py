"""Study storage: Optuna storages by URL, the artifact store beside them, opening studies and
the patch tensors their trials stored (the format of what is stored is ``search``'s record).

The default is ``sqlite:///spotpatch.db`` (relative to the working directory, as every Optuna
tool reads it) with patch artifacts in ``spotpatch-artifacts/`` beside the database. Any
Optuna storage URL works (PostgreSQL for several drivers on several hosts); the artifact folder
is then ``[search] artifacts`` (shared by every host that runs trials' drivers).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from spotpatch._defaults import DEFAULT_STORAGE
from spotpatch._errors import UserError
from spotpatch.search import (
    StudyMeta,
    advisory_lock,
    is_spotpatch_study,
    spotpatch_study_names,
    study_meta,
    write_study_meta,
)

__all__ = [
    "DEFAULT_STORAGE",
    "open_storage",
    "storage_url",
    "artifacts_dir_for",
    "artifact_store",
    "check_run_folders",
    "create_or_load_study",
    "load_study",
]


def _sqlite_path(url: str) -> Path | None:
    return Path(url[len("sqlite:///") :]) if url.startswith("sqlite:///") else None


@contextlib.contextmanager
def _schema_lock(url: str) -> Iterator[None]:
    """On PostgreSQL, an advisory lock while Optuna creates or upgrades its tables: drivers that
    open a new database at once would otherwise all create them, and all but one fail."""
    if not url.startswith("postgresql"):
        yield
        return
    import sqlalchemy

    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with advisory_lock(engine, _SCHEMA_KEY):
            yield
    finally:
        engine.dispose()


_SCHEMA_KEY = 0x5370_6F74_5363_6865  # fixed; the study locks hash their names into theirs


def storage_label(storage) -> str:
    """A storage (or its URL) as messages and pages show it: its URL with any password hidden."""
    url = storage_url(storage)
    if not url:
        return type(storage).__name__
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy reads: show only its scheme
        return url.split("://", 1)[0] + "://..."


def _driver_hint(url: str) -> str:
    if url.startswith("postgresql"):
        return 'pip install "spotpatch[postgres]" and use postgresql://... (psycopg)'
    if url.startswith("mysql"):
        return "pip install pymysql and use mysql+pymysql://..."
    return "install the driver the URL names"


def open_storage(url: str, *, existing: bool = False):
    """An Optuna storage for a URL. SQLite waits for locks (several local workers share it).

    With ``existing`` (readers: status, plan, export, dashboard) a SQLite file that does not
    exist is an error, where opening it would create an empty database.
    """
    import optuna
    import sqlalchemy.exc

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if not isinstance(url, str) or "://" not in url:
        raise UserError(f"storage must be a URL such as {DEFAULT_STORAGE}, got {url!r}")
    path = _sqlite_path(url)
    if existing and path is not None and not path.is_file():
        raise UserError(f"no study storage at {path} (storage {url})")
    if path is not None and path.parent != Path("") and not path.parent.is_dir():
        raise UserError(f"storage folder not found: {path.parent}")
    try:
        kwargs = {"connect_args": {"timeout": 60}} if path is not None else {}
        with _schema_lock(url):
            storage = optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
        if storage.engine.dialect.name == "postgresql":
            _end_lost_sessions(storage.engine)
        return storage
    except ImportError as e:
        module = getattr(e, "name", None) or getattr(e.__cause__, "name", None)
        raise UserError(
            f"cannot open storage {storage_label(url)}: its database driver "
            f"{f'({module}) ' if module else ''}is not installed; {_driver_hint(url)}"
        ) from None
    except (
        sqlalchemy.exc.ArgumentError,
        sqlalchemy.exc.OperationalError,
        ValueError,
    ) as e:
        why = str(e).splitlines()[0]
        raise UserError(f"cannot open storage {storage_label(url)}: {why}") from None


#: PostgreSQL's TCP keepalives on every session a storage opens (seconds idle before the first
#: probe, seconds between probes, probes): the server ends the session of a host that vanished
#: without closing it (power lost, network gone) within about a minute and a half, and with it
#: the study's lock that host may hold. The server's default waits two hours, other hosts
#: waiting on that lock all along.
KEEPALIVES = {"tcp_keepalives_idle": 60, "tcp_keepalives_interval": 10, "tcp_keepalives_count": 3}


def _end_lost_sessions(engine) -> None:
    """Set :data:`KEEPALIVES` on each of ``engine``'s sessions as it connects (a ``SET``, which
    poolers in session mode pass on, where a startup option could be refused)."""
    import sqlalchemy

    def on_connect(connection, _record) -> None:
        with connection.cursor() as cursor:
            for name, value in KEEPALIVES.items():
                cursor.execute(f"SET {name} = {int(value)}")
        connection.commit()

    sqlalchemy.event.listen(engine, "connect", on_connect)
    engine.dispose()  # sessions opened before the listener (the schema's) are not reused


def artifacts_dir_for(url: str, artifacts: str | Path | None = None) -> Path:
    """The artifact folder: the one given, else ``NAME-artifacts/`` beside a SQLite file, else
    ``spotpatch-artifacts/`` in the working directory."""
    if artifacts is not None:
        return Path(artifacts).resolve()
    path = _sqlite_path(url)
    if path is not None and path.name:
        return (path.parent / f"{path.stem}-artifacts").resolve()
    return Path("spotpatch-artifacts").resolve()


def check_run_folders(url: str, artifacts: str | Path | None) -> None:
    """Refuse, before a run writes anything, folders it could not write to: a SQLite storage's
    folder (missing, a file, or taking no new file: SQLite writes its journal beside the
    database), its database when it exists (a folder, or read-only), and the artifact folder
    (a file, or neither it nor the nearest folder above it, where it would be made, takes a new
    file; None: no artifacts are written). Other storages are checked by their server when
    opened.

    Raises:
        UserError: one line naming the folder or file.
    """
    path = _sqlite_path(url)
    if path is not None and str(path) not in ("", ":memory:"):
        folder = path.parent
        if not folder.exists():
            raise UserError(f"storage folder not found: {folder} (storage {url})")
        if not folder.is_dir():
            raise UserError(f"storage folder {folder} is a file, not a folder (storage {url})")
        if path.is_dir():
            raise UserError(f"storage {path} is a folder, not a database file (storage {url})")
        _check_takes_files(folder, f"storage folder {folder}")
        if path.exists():
            try:
                open(path, "r+b").close()
            except OSError as e:
                raise UserError(f"storage {path} cannot be written ({e.strerror or e})") from None
    if artifacts is None:
        return
    folder = Path(artifacts)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"artifact folder {folder} is a file, not a folder")
    above = folder
    while not above.exists() and above != above.parent:
        above = above.parent
    if not above.is_dir():
        raise UserError(f"cannot make the artifact folder {folder}: {above} is a file")
    what = f"artifact folder {folder}" if above == folder else f"folder {above}"
    _check_takes_files(above, what)


def _check_takes_files(folder: Path, what: str) -> None:
    """Refuse a folder where no file can be made, by making one (permission bits alone miss
    read-only mounts, and say nothing to root)."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".spotpatch-probe-", dir=folder)
    except OSError as e:
        raise UserError(f"{what} is not writable ({e.strerror or e})") from None
    os.close(fd)
    os.unlink(probe)


def artifact_store(folder: str | Path):
    import optuna

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return optuna.artifacts.FileSystemArtifactStore(str(folder))


def storage_url(storage) -> str | None:
    """The URL a storage (or Optuna's caching wrapper around it) was opened with."""
    if isinstance(storage, str):
        return storage
    backend = getattr(storage, "_backend", storage)  # optuna's cached storage wraps the RDB one
    url = getattr(backend, "url", None)
    return url if isinstance(url, str) else None


def load_study(name: str, storage, sampler=None):
    """An existing study by name; :class:`UserError` naming the known ones otherwise."""
    import optuna

    try:
        storage.get_study_id_from_name(name)
    except KeyError:
        names = spotpatch_study_names(storage)
        known = ", ".join(names) if names else "none"
        raise UserError(f"no study named {name!r} in this storage (studies: {known})") from None
    return optuna.load_study(study_name=name, storage=storage, sampler=sampler)


def create_or_load_study(meta: StudyMeta, storage, sampler):
    """Open the study ``meta.task``, creating it with its metadata; an existing study must have
    been made for the same task, base and space (else resuming it would mix two searches)."""
    import optuna

    study = optuna.create_study(
        study_name=meta.task,
        storage=storage,
        sampler=sampler,
        directions=["maximize", "minimize"],
        load_if_exists=True,
    )
    if not is_spotpatch_study(study):
        write_study_meta(study, meta)
        return study
    old = study_meta(study)
    for key in ("classes", "model", "base_sha256", "granularity", "kinds", "dtype"):
        if getattr(old, key) != getattr(meta, key):
            raise UserError(
                f"study {meta.task!r} already exists with another {key} "
                f"({json.dumps(getattr(old, key))[:60]}); use another study name or storage"
            )
    # The study follows its last run's spec: its answer's tolerance, and where its spec is.
    latest = dataclasses.replace(
        old, tolerance=meta.tolerance, spec=meta.spec, spec_text=meta.spec_text
    )
    if latest != old:
        write_study_meta(study, latest)
    return study
