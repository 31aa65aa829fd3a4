"""Small SCU helpers shared by the PACS pull and the inbound PACS store: associate, C-FIND.

Errors say what failed and what to check; they never carry patient data.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
)

PENDING = {0xFF00, 0xFF01}
SUCCESS = 0x0000


class DimseError(Exception):
    """A DICOM exchange with a peer failed; the message says what and what to check."""


@dataclass(frozen=True)
class Peer:
    host: str
    port: int
    ae_title: str
    label: str = "the PACS"

    def __str__(self) -> str:
        return f"{self.label} at {self.host}:{self.port} (AE {self.ae_title})"


def new_ae(calling_ae: str, timeout: float, dimse_timeout: float | None = None) -> AE:
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = timeout
    ae.network_timeout = timeout
    ae.connection_timeout = timeout
    ae.dimse_timeout = timeout if dimse_timeout is None else dimse_timeout
    ae.maximum_pdu_size = 0
    return ae


# pynetdicom's reactor checks an idle association's socket every millisecond: in a C-MOVE's
# requester that cost about a CPU-second per 500 MB study (two associations; the pull
# command's CPU 4.1 -> 3.0 s in bench/agent_bench.py), CPU the receiving end needs on a small
# machine. It only waits there for one pending response per instance, so a slower poll costs
# a few milliseconds per C-MOVE request and nothing per instance.
WAITING_POLL_S = 0.02


def poll_slowly(assoc: Any, seconds: float = WAITING_POLL_S) -> None:
    """Have `assoc`'s reactor check its idle socket every `seconds` (pynetdicom: 0.001); only
    for associations that wait (C-MOVE requests), never where instances arrive (C-GET)."""
    dul = getattr(assoc, "dul", None)
    if dul is not None and hasattr(dul, "_run_loop_delay"):
        dul._run_loop_delay = seconds


def _reachable(peer: Peer, timeout: float) -> bool:
    try:
        with socket.create_connection((peer.host, peer.port), timeout=timeout):
            return True
    except OSError:
        return False


def open_association(ae: AE, peer: Peer, hint: str = "", **kwargs: Any) -> Any:
    """An established association to `peer`, or DimseError saying what to check."""
    assoc = ae.associate(peer.host, peer.port, ae_title=peer.ae_title, **kwargs)
    if assoc.is_established:
        return assoc
    if assoc.is_rejected:
        what = "rejected the association"
        todo = (
            f"check that {peer.ae_title} is its AE title and that it accepts the calling "
            f"AE {ae.ae_title}"
        )
    elif assoc.is_aborted and _reachable(peer, ae.connection_timeout or 10):
        what = "aborted the association"
        todo = "check its log and that it accepts the proposed services"
    else:
        what = "did not answer"
        todo = "check host and port and that it is running and reachable"
    raise DimseError(f"{peer} {what}; {todo}{hint}")


@contextmanager
def associate(ae: AE, peer: Peer, hint: str = "", **kwargs: Any) -> Iterator[Any]:
    """An established association to `peer`, released (or aborted on error) on exit."""
    assoc = open_association(ae, peer, hint, **kwargs)
    try:
        yield assoc
    except BaseException:
        if assoc.is_established:
            assoc.abort()
        raise
    else:
        if assoc.is_established:
            assoc.release()


def status_text(status: Any) -> str:
    """The status code of a peer's response and what its class means. Never the peer's Error
    Comment: that is the peer's free text, and PACSes echo the instance or the query there
    (a patient's name or ID); this text goes to logs, the ledger, the CLI and the hub."""
    code = getattr(status, "Status", None)
    if code is None:
        return "no response (timeout or aborted association)"
    value = int(code)
    text = f"status 0x{value:04X}"
    meaning = "cancelled" if value == 0xFE00 else _STATUS_CLASSES.get(value >> 12)
    extra = "; its Error Comment is left out, see the peer's log" if _has_comment(status) else ""
    return f"{text} ({meaning}{extra})" if meaning else text


_STATUS_CLASSES = {
    0xA: "failure: refused or out of resources",
    0xB: "warning",
    0xC: "failure: cannot understand or unable to process",
}


def _has_comment(status: Any) -> bool:
    try:
        return bool(getattr(status, "ErrorComment", None))
    except Exception:  # a malformed comment is still a comment left out
        return True


def c_find(assoc: Any, identifier: Dataset, peer: Peer, model: Any = None) -> list[Dataset]:
    """All matches of one C-FIND; raises DimseError unless the peer ends with success."""
    model = model or StudyRootQueryRetrieveInformationModelFind
    matches: list[Dataset] = []
    for status, found in assoc.send_c_find(identifier, model):
        code = getattr(status, "Status", None)
        if code in PENDING:
            if found is not None:
                matches.append(found)
            continue
        if code == SUCCESS:
            return matches
        level = identifier.get("QueryRetrieveLevel", "?")
        raise DimseError(f"{peer} failed a {level}-level C-FIND: {status_text(status)}")
    raise DimseError(f"{peer} ended a C-FIND without a final status")


def find_identifier(level: str, **keys: Any) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


def text_value(ds: Dataset, keyword: str) -> str | None:
    """A single string value, or None when the peer omitted it or left it empty."""
    value = ds.get(keyword)
    if value is None:
        return None
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        value = value[0] if len(value) else ""
    text = str(value).strip()
    return text or None


def int_value(ds: Dataset, keyword: str) -> int | None:
    text = text_value(ds, keyword)
    if text is None:
        return None
    try:
        number = int(float(text))
    except ValueError:
        return None
    return number if number >= 0 else None


def multi_value(ds: Dataset, keyword: str) -> tuple[str, ...]:
    value = ds.get(keyword)
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        items = value.split("\\")
    elif isinstance(value, Sequence):
        items = [str(v) for v in value]
    else:
        items = [str(value)]
    return tuple(i.strip() for i in items if str(i).strip())
