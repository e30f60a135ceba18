"""Study storage: Optuna storages by URL, the artifact store beside them, study metadata.

The default is ``sqlite:///spotpatch.db`` (relative to the working directory, as every Optuna
tool reads it) with patch artifacts in ``spotpatch-artifacts/`` beside the database. Any
Optuna storage URL works (PostgreSQL for several drivers on several hosts); the artifact folder
is then ``[search] artifacts`` (shared by every host that runs trials' drivers).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spotpatch._errors import UserError

__all__ = [
    "DEFAULT_STORAGE",
    "StudyMeta",
    "open_storage",
    "artifacts_dir_for",
    "artifact_store",
    "create_or_load_study",
    "load_study",
    "list_study_names",
    "study_meta",
]

DEFAULT_STORAGE = "sqlite:///spotpatch.db"
META_KEY = "spotpatch"
RELAXATION_KEY = "relaxation"
FORMAT = 1


@dataclass(frozen=True)
class StudyMeta:
    """What a study records about itself at creation: enough to export without the spec."""

    task: str
    classes: tuple[str, ...]
    model: str
    checkpoint: str | None
    base_sha256: str
    granularity: str
    kinds: tuple[str, ...]
    dtype: str
    full_bytes: int
    head_bytes: int
    artifacts: str
    spec: str
    seed: int
    train: dict[str, Any]
    sampler: str
    warm_start: str
    category_ids: tuple[int, ...] | None = None  # COCO ids in class order (None: older studies)

    def to_json(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["classes"], data["kinds"] = list(self.classes), list(self.kinds)
        if self.category_ids is not None:
            data["category_ids"] = list(self.category_ids)
        return {"format": FORMAT, **data}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StudyMeta:
        fields = {k: v for k, v in data.items() if k != "format"}
        fields["classes"], fields["kinds"] = tuple(fields["classes"]), tuple(fields["kinds"])
        if fields.get("category_ids") is not None:
            fields["category_ids"] = tuple(fields["category_ids"])
        return cls(**fields)


def _sqlite_path(url: str) -> Path | None:
    return Path(url[len("sqlite:///") :]) if url.startswith("sqlite:///") else None


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
        return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
    except ImportError:
        raise UserError(
            f"cannot open storage {url}: its database driver is not installed (PostgreSQL: "
            "pip install psycopg2-binary; MySQL: pip install pymysql, then mysql+pymysql://...)"
        ) from None
    except (
        sqlalchemy.exc.ArgumentError,
        sqlalchemy.exc.OperationalError,
        ValueError,
    ) as e:
        raise UserError(f"cannot open storage {url}: {str(e).splitlines()[0]}") from None


def artifacts_dir_for(url: str, artifacts: str | Path | None = None) -> Path:
    """The artifact folder: the one given, else ``NAME-artifacts/`` beside a SQLite file, else
    ``spotpatch-artifacts/`` in the working directory."""
    if artifacts is not None:
        return Path(artifacts).resolve()
    path = _sqlite_path(url)
    if path is not None and path.name:
        return (path.parent / f"{path.stem}-artifacts").resolve()
    return Path("spotpatch-artifacts").resolve()


def artifact_store(folder: str | Path):
    import optuna

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return optuna.artifacts.FileSystemArtifactStore(str(folder))


def list_study_names(storage) -> list[str]:
    """Study names, without reading any trial (fast on large storages)."""
    return [s.study_name for s in storage.get_all_studies()]


def load_study(name: str, storage, sampler=None):
    """An existing study by name; :class:`UserError` naming the known ones otherwise."""
    import optuna

    names = list_study_names(storage)
    if name not in names:
        known = ", ".join(names) if names else "none"
        raise UserError(f"no study named {name!r} in this storage (studies: {known})")
    return optuna.load_study(study_name=name, storage=storage, sampler=sampler)


def study_meta(study) -> StudyMeta:
    raw = study.user_attrs.get(META_KEY)
    if raw is None:
        raise UserError(f"study {study.study_name!r} was not made by spotpatch")
    return StudyMeta.from_json(raw)


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
    if META_KEY not in study.user_attrs:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(["map", "patch_bytes"])
        study.set_user_attr(META_KEY, meta.to_json())
        return study
    old = study_meta(study)
    for key in ("classes", "model", "base_sha256", "granularity", "kinds", "dtype"):
        if getattr(old, key) != getattr(meta, key):
            raise UserError(
                f"study {meta.task!r} already exists with another {key} "
                f"({json.dumps(getattr(old, key))[:60]}); use another study name or storage"
            )
    return study
