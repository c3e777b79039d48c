"""One policy for problems that lose data while reading a dataset.

With a quarantine the reader records the skip (key, file, field, reason) and goes on with
the next sequence; without one the caller asked for strictness and gets a FormatError
naming the file and the field.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.datasets.records import Quarantine
from storage.errors import FormatError, TcmrError


def reject(
    quarantine: Quarantine | None, key: str, file: Path | str, field: str, reason: str
) -> None:
    """Record the skip, or raise FormatError(`file: field FIELD: reason`) without a quarantine."""
    if quarantine is None:
        raise FormatError(f"{file}: field {field}: {reason}")
    quarantine.add(key, file, field, reason)


def too_short(
    quarantine: Quarantine | None,
    key: str,
    file: Path | str,
    field: str,
    frames: int,
    minimum: int,
    rule: str = "min_frames",
    unit: str = "frames",
) -> bool:
    """Whether a run has fewer than `minimum` frames; if so it is left out and recorded.

    Short runs are normal (after subsampling, between invisible frames), so this never
    raises, even without a quarantine. `rule` names the reader rule that sets `minimum`.
    """
    if frames >= minimum:
        return False
    if quarantine is not None:
        quarantine.add(key, file, field, f"{frames} {unit} < {rule} {minimum}")
    return True


def reject_error(
    quarantine: Quarantine | None, key: str, file: Path | str, field: str, error: Exception
) -> None:
    """Like `reject` for a caught error: a user-facing error is re-raised unchanged."""
    if quarantine is None:
        if isinstance(error, TcmrError):
            raise error
        raise FormatError(f"{file}: field {field}: {error}") from error
    quarantine.add(key, file, field, str(error))
