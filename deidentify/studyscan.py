"""A study pre-pass for `hexchange-deid`: the identity of each input's whole study.

Every input's header is read once (the raw header parser of the fast path; pydicom without
Pixel Data for anything it does not handle, e.g. SR and documents), its identifying values are
collected (`StudyIdentity`) and merged per Study Instance UID, so `apply` and `verify` look for
a name that only another instance of the study carries (a reading physician named only in the
report) - the same output the node agent produces from the same study. Unreadable inputs get no
identity here; the main pass quarantines them with the reason.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from pydicom import dcmread

from deidentify.fastpath import raw_identity
from deidentify.identity import StudyIdentity
from deidentify.rawdicom import read_header

FileIdentity = tuple[str, StudyIdentity] | None


def file_identity(path: Path) -> FileIdentity:
    """(Study Instance UID, identity) of one input; None when it cannot be read."""
    found = _from_raw_header(path)
    if found is not None:
        return found
    try:
        ds = dcmread(path, stop_before_pixels=True)
        return str(ds.get("StudyInstanceUID", "") or ""), StudyIdentity.collect([ds])
    except Exception:  # unreadable: the main pass quarantines it with the reason
        return None


def _from_raw_header(path: Path) -> FileIdentity:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            return raw_identity(read_header(fd, os.fstat(fd).st_size))
        finally:
            os.close(fd)
    except Exception:  # Fallback or an unusual file: pydicom reads it
        return None


def study_identities(
    paths: Sequence[Path],
    map_fn: Callable[[Callable[[Path], FileIdentity], Sequence[Path]], Iterable[FileIdentity]]
    | None = None,
) -> list[StudyIdentity | None]:
    """For each path, the merged identity of its study (None: unreadable or no study UID).
    `map_fn`: e.g. a process pool's `map`, to read the headers in parallel."""
    found = list((map_fn or _serial_map)(file_identity, paths))
    studies: dict[str, StudyIdentity] = {}
    for item in found:
        if item is not None and item[0]:
            uid, identity = item
            studies[uid] = studies[uid].merge(identity) if uid in studies else identity
    return [studies.get(item[0]) if item is not None and item[0] else None for item in found]


def _serial_map(
    fn: Callable[[Path], FileIdentity], paths: Sequence[Path]
) -> Iterable[FileIdentity]:
    return map(fn, paths)
