"""Where inbound instances go: a local folder (default) or the site's PACS over C-STORE.

A delivery is acknowledged to the hub only after `confirm` says every instance is held."""

from __future__ import annotations

import hashlib
import io
import time
from pathlib import Path
from typing import Any, Protocol

import structlog
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
    Verification,
)

from node_agent.config import InboundSection
from node_agent.dicom.scu import (
    SUCCESS,
    DimseError,
    Peer,
    associate,
    c_find,
    find_identifier,
    new_ae,
    open_association,
    status_text,
    text_value,
)
from node_agent.dicom.transcode import (
    UNCOMPRESSED,
    TranscodeError,
    decompress_to_explicit_le,
    syntax_name,
)
from node_agent.dicom.uids import is_valid_uid
from node_agent.files import durable_write

log = structlog.get_logger("hexchange.agent.store")


class StoreError(Exception):
    """Storing failed; retry later. The message names no patient data."""


class InstanceStore(Protocol):
    def store(self, data: bytes) -> str:
        """Store one Part 10 instance; returns its SOP Instance UID."""
        ...

    def confirm(self, sop_uids: list[str]) -> None:
        """Raise StoreError unless every one of `sop_uids` is held by the store."""
        ...


class InstanceInvalid(Exception):
    """The delivered instance itself is unacceptable (retrying cannot help): quarantine it."""


def _uids(data: bytes) -> tuple[str, str, str]:
    try:
        ds = dcmread(
            io.BytesIO(data),
            stop_before_pixels=True,
            specific_tags=["StudyInstanceUID", "SOPInstanceUID", "SOPClassUID"],
        )
    except (InvalidDicomError, EOFError, ValueError) as exc:
        raise InstanceInvalid(f"a delivered instance is not DICOM ({type(exc).__name__})") from exc
    uids = (
        str(ds.get("StudyInstanceUID", "")),
        str(ds.get("SOPInstanceUID", "")),
        str(ds.get("SOPClassUID", "")),
    )
    if not all(is_valid_uid(uid) for uid in uids):
        raise InstanceInvalid("a delivered instance has a missing or malformed UID")
    return uids


class FolderStore:
    """<folder>/<hash of study UID>/<SOP Instance UID>.dcm, written durably; idempotent."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self._paths: dict[str, Path] = {}

    @staticmethod
    def is_available() -> bool:
        return True

    def store(self, data: bytes) -> str:
        study_uid, sop_uid, _ = _uids(data)
        study_dir = self.folder / hashlib.sha256(study_uid.encode()).hexdigest()[:24]
        path = study_dir / f"{sop_uid}.dcm"
        durable_write(path, data)
        self._paths[sop_uid] = path
        return sop_uid

    def confirm(self, sop_uids: list[str]) -> None:
        missing = [u for u in sop_uids if u not in self._paths or not self._paths[u].exists()]
        for uid in sop_uids:
            self._paths.pop(uid, None)
        if missing:
            raise StoreError(
                f"{len(missing)} of {len(sop_uids)} instances are not in {self.folder}; "
                "check that nothing else removes files there"
            )


_STORED_WITH_WARNING = {0xB000, 0xB006, 0xB007}


class SopClassRefused(StoreError):
    """The PACS accepts the SOP class in no transfer syntax offered: its admin must enable it.

    Retried later like any StoreError (the delivery waits; its error names the class)."""


class PacsStore:
    """C-STORE each instance to the local PACS, then confirm with an IMAGE-level C-FIND.

    One association is kept across the instances of a delivery (re-opened when an instance
    needs a presentation context it lacks); a lost association or a PACS that does not answer
    is retried a few times, then StoreError lets the inbound loop retry the delivery later.

    Each SOP class is offered in the instance's own transfer syntax and, as a separate
    presentation context, uncompressed (Explicit, then Implicit VR Little Endian). When the
    PACS takes the original syntax, the instance goes as it is (a lossy original too); when it
    takes only uncompressed, the instance is decompressed losslessly first
    (node_agent.dicom.transcode); when it takes the class in neither, SopClassRefused names it.
    """

    def __init__(
        self,
        section: InboundSection,
        calling_ae: str,
        *,
        attempts: int = 3,
        retry_delay: float = 1.0,
        timeout: float = 30.0,
    ) -> None:
        self.section = section
        self.calling_ae = calling_ae
        self.attempts = attempts
        self.retry_delay = retry_delay
        self.timeout = timeout
        self.peer = Peer(
            section.pacs_host, section.pacs_port, section.pacs_ae_title, label="the local PACS"
        )
        self._assoc: Any = None
        self._contexts: dict[tuple[str, str], None] = {}  # (SOP class, syntax) to offer
        self._accepted: set[tuple[str, str]] = set()  # on the open association
        self._stored: dict[str, tuple[str, str]] = {}  # SOP UID -> (study UID, series UID)

    _hint = " ([inbound] pacs_host/pacs_port/pacs_ae_title; the agent calls as dicom.ae_title)"

    def store(self, data: bytes) -> str:
        _uids(data)  # InstanceInvalid (quarantine, no retry) when it is not usable DICOM
        try:
            ds = dcmread(io.BytesIO(data))
            key = (str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID))
            study_uid, series_uid = str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)
            sop_uid = str(ds.SOPInstanceUID)
        except (AttributeError, ValueError, EOFError, InvalidDicomError) as exc:
            raise InstanceInvalid(
                f"a delivered instance cannot be parsed for C-STORE ({type(exc).__name__})"
            ) from exc
        for attempt in range(1, self.attempts + 1):
            try:
                assoc = self._association(key)
                self._as_accepted(ds, key)
                status = assoc.send_c_store(ds)
            except DimseError as exc:
                reason = str(exc)
            except (RuntimeError, ValueError) as exc:  # no context / association lost
                self.close()
                reason = f"{self.peer} could not take the instance ({type(exc).__name__})"
            else:
                code = getattr(status, "Status", None)
                if code == SUCCESS or code in _STORED_WITH_WARNING:
                    self._stored[sop_uid] = (study_uid, series_uid)
                    return sop_uid
                self.close()
                if code is not None:
                    raise StoreError(
                        f"{self.peer} refused C-STORE with {status_text(status)}; "
                        "check its disk space and log"
                    )
                reason = f"{self.peer} did not answer the C-STORE"
            if attempt < self.attempts:
                time.sleep(self.retry_delay * attempt)
        raise StoreError(f"{reason} (after {self.attempts} attempts)")

    def _as_accepted(self, ds: Dataset, key: tuple[str, str]) -> None:
        """Leave `ds` as it is when the PACS takes it so, else decompress it in place."""
        if key in self._accepted or UID(key[1]) in UNCOMPRESSED:
            return
        try:
            decompress_to_explicit_le(ds)
        except TranscodeError as exc:
            raise InstanceInvalid(
                f"{self.peer} does not accept {syntax_name(key[1])} for "
                f"{syntax_name(key[0])}, and {exc}"
            ) from exc
        log.info(
            "instance decompressed for the PACS",
            source_syntax=key[1],
            sop_class=key[0],
            lossy_source=str(ds.get("LossyImageCompression", "")) == "01",
        )

    def _association(self, key: tuple[str, str]) -> Any:
        """An association on which the instance's SOP class is accepted in its own transfer
        syntax or uncompressed (the last association, when it already has such a context)."""
        if self._assoc is not None and self._assoc.is_established and key in self._contexts:
            return self._assoc
        self.close()
        self._contexts[key] = None
        while len({sop for sop, _ in self._contexts}) + len(self._contexts) > 119:
            del self._contexts[next(iter(self._contexts))]
        ae = new_ae(self.calling_ae, self.timeout)
        for sop_class, syntax in self._contexts:
            if UID(syntax) not in UNCOMPRESSED:
                ae.add_requested_context(sop_class, syntax)
        for sop_class in dict.fromkeys(sop for sop, _ in self._contexts):
            ae.add_requested_context(sop_class, list(UNCOMPRESSED))
        # every PACS accepts Verification: with it, a refused class is named (below) rather
        # than the whole association aborted for want of any accepted context
        ae.add_requested_context(Verification)
        assoc = open_association(ae, self.peer, self._hint)
        accepted = {(c.abstract_syntax, c.transfer_syntax[0]) for c in assoc.accepted_contexts}
        self._accepted = accepted
        if not any(sop == key[0] for sop, _ in accepted):
            assoc.release()
            del self._contexts[key]
            raise SopClassRefused(
                f"{self.peer} refuses SOP class {syntax_name(key[0])} in every transfer syntax "
                f"offered ({syntax_name(key[1])}, Explicit and Implicit VR Little Endian); "
                "enable that SOP class there (Orthanc: UnknownSopClassAccepted or its "
                "accepted SOP classes)"
            )
        self._assoc = assoc
        return assoc

    def close(self) -> None:
        assoc, self._assoc = self._assoc, None
        if assoc is not None and assoc.is_established:
            try:
                assoc.release()
            except Exception:
                assoc.abort()

    def confirm(self, sop_uids: list[str]) -> None:
        """Ask the PACS (IMAGE-level C-FIND per series) whether every instance arrived."""
        self.close()
        wanted = list(dict.fromkeys(sop_uids))
        unknown = [u for u in wanted if u not in self._stored]
        if unknown:
            raise StoreError(
                f"{len(unknown)} of {len(wanted)} instances were not stored in this run; "
                "the delivery will be stored again"
            )
        by_series: dict[tuple[str, str], set[str]] = {}
        for uid in wanted:
            by_series.setdefault(self._stored[uid], set()).add(uid)
        ae = new_ae(self.calling_ae, self.timeout)
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
        missing = 0
        try:
            with associate(ae, self.peer, self._hint) as assoc:
                for (study_uid, series_uid), uids in by_series.items():
                    identifier = find_identifier(
                        "IMAGE",
                        StudyInstanceUID=study_uid,
                        SeriesInstanceUID=series_uid,
                        SOPInstanceUID="",
                    )
                    found = {
                        text_value(m, "SOPInstanceUID")
                        for m in c_find(assoc, identifier, self.peer)
                    }
                    missing += len(uids - found)
        except DimseError as exc:
            raise StoreError(
                f"cannot confirm the delivery: {exc}; the PACS must allow C-FIND from this AE"
            ) from exc
        for uid in wanted:
            self._stored.pop(uid, None)
        if missing:
            raise StoreError(
                f"{self.peer} holds {len(wanted) - missing} of {len(wanted)} instances after "
                f"C-STORE ({missing} missing); the delivery will be stored again"
            )


def make_store(section: InboundSection, folder: Path, calling_ae: str) -> InstanceStore:
    if section.store == "pacs":
        return PacsStore(section, calling_ae)
    return FolderStore(folder)
