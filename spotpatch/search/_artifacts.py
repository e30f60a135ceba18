"""A trial's patch tensors as an Optuna artifact: the one module that writes and reads the file.

A scored trial's tensors are stored as one safetensors file in the study's artifact store, and
the trial records the file's id and its sha256 (:mod:`._record`). Reading it back checks that
sha256, so a file altered, truncated or replaced after the trial stored it is refused with one
line naming the study, the trial and the file; trials stored before the sha256 was recorded are
read unchecked, as they were.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from spotpatch._errors import UserError
from spotpatch._files import sha256_of
from spotpatch.search._record import TrialRecord

__all__ = ["read_patch", "store_patch"]


def store_patch(store, trial, tensors: Mapping) -> tuple[str, str]:
    """Store a trial's patch tensors (name -> torch tensor) in an Optuna artifact store as a
    safetensors file; returns the artifact's id and the sha256 of the file's bytes."""
    import optuna
    from safetensors.torch import save_file

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "patch.safetensors"
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
        artifact_id = optuna.artifacts.upload_artifact(
            artifact_store=store,
            file_path=str(path),
            study_or_trial=trial,
            mimetype="application/octet-stream",
        )
        return artifact_id, sha256_of(path)


def read_patch(study_name: str, record: TrialRecord, folders: Sequence[Path]) -> bytes:
    """The bytes of the patch tensors a trial stored, from the first of ``folders`` (artifact
    folders) that holds them, checked against the sha256 the trial recorded.

    Raises:
        UserError: the trial stored none, no folder holds them, or the file is not the one the
            trial stored.
    """
    import optuna
    from optuna.artifacts.exceptions import ArtifactNotFound

    if record.artifact_id is None:
        raise UserError(f"trial {record.number} of study {study_name!r} stored no patch tensors")
    data = where = None
    for folder in dict.fromkeys(folders):
        if not folder.is_dir():
            continue
        try:
            reader = optuna.artifacts.FileSystemArtifactStore(str(folder)).open_reader(
                record.artifact_id
            )
        except ArtifactNotFound:
            continue
        with reader:
            data = reader.read()
            # A file store's reader is the open file: name it, else name the artifact.
            where = getattr(reader, "name", None) or f"artifact {record.artifact_id}"
        break
    if data is None:
        shown = ", ".join(str(f) for f in dict.fromkeys(folders)) or "no artifact folder"
        raise UserError(
            f"patch tensors of trial {record.number} of study {study_name!r} (artifact "
            f"{record.artifact_id}) not found in {shown}"
        )
    expected = record.artifact_sha256
    if expected is not None and (actual := sha256_of(data)) != expected:
        raise UserError(
            f"patch tensors of trial {record.number} of study {study_name!r} changed after the "
            f"trial stored them: {where} (sha256 {actual[:12]}, recorded {expected[:12]})"
        )
    return data
