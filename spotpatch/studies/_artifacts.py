"""A trial's stored patch tensors, found where its study keeps them.

The file's format and its sha256 check belong to :mod:`spotpatch.search._artifacts`; this
module says where to look: the artifact folder the study recorded, then the default folder
beside its SQLite storage (a database and its artifacts moved together).
"""

from __future__ import annotations

from pathlib import Path

from spotpatch.search import StudyMeta, TrialRecord, read_patch
from spotpatch.studies._storage import artifacts_dir_for, storage_url

__all__ = ["read_artifact"]


def read_artifact(study_name: str, meta: StudyMeta, record: TrialRecord, storage) -> bytes:
    """The bytes of the patch tensors a trial stored (a safetensors file), checked against the
    sha256 the trial recorded, when it recorded one.

    Raises:
        UserError: the trial stored none, the file is missing, or it is not the file the trial
            stored.

    Example:
        >>> data = read_artifact("pets", study_meta(study), record, storage)  # doctest: +SKIP
    """
    folders = [Path(meta.artifacts)] if meta.artifacts else []
    url = storage_url(storage)
    if url is not None:
        folders.append(artifacts_dir_for(url))
    return read_patch(study_name, record, folders)
