"""A trial's stored patch tensors, checked against the sha256 its trial recorded.

The file is found by :func:`~spotpatch.studies._storage.open_artifact`. A trial told since the
sha256 is recorded (``TrialRecord.artifact_sha256``) gets its bytes checked, so a file altered,
truncated or replaced after the trial stored it is refused with one line naming the study, the
trial and the file. Trials stored before carry no sha256 and are read unchecked, as they were.
"""

from __future__ import annotations

from spotpatch._errors import UserError
from spotpatch._files import sha256_of
from spotpatch.search import StudyMeta, TrialRecord
from spotpatch.studies._storage import open_artifact

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
    with open_artifact(study_name, meta, record, storage) as reader:
        data = reader.read()
        # A file store's reader is the open file: name it, else name the artifact.
        where = getattr(reader, "name", None) or f"artifact {record.artifact_id}"
    expected = record.artifact_sha256
    if expected is not None and (actual := sha256_of(data)) != expected:
        raise UserError(
            f"patch tensors of trial {record.number} of study {study_name!r} changed after the "
            f"trial stored them: {where} (sha256 {actual[:12]}, recorded {expected[:12]})"
        )
    return data
