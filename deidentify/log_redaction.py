"""Log records without the values they quote: the one place where library log lines and
exception messages are made fit for a log.

Libraries write header values into their log lines and exception messages: pydicom warns
``Invalid value for VR DA: '<the patient's birth date>'`` as it reads a file, Python's own
errors say ``could not convert string to float: '<the value>'``, and a traceback ends with the
message. Logs leave the process (journal, log shipping, a support ticket), so the agent and
the hub install this at start-up (`install`):

- every standard-library record's text has its quoted parts replaced by ``'…'`` (library
  messages quote the values they name: pydicom, pynetdicom, Python's warnings);
- a record's traceback (``exc_info``) is rendered with its frames and exception types, never
  the exception messages (`exception_without_values`);
- Python's warnings become log records (``py.warnings``), so the same redaction applies.

`structlog_exc_info` is the structlog processor that renders ``exc_info`` the same way (in
place of ``structlog.processors.format_exc_info``).
"""

from __future__ import annotations

import logging
import re
import sys
import traceback
from collections.abc import MutableMapping
from types import TracebackType
from typing import Any

__all__ = [
    "ValueFreeRecords",
    "exception_without_values",
    "install",
    "redact_quoted",
    "structlog_exc_info",
    "uninstall",
]

# From a quote to the last quote of the same kind: a value holding a quote of its own is
# redacted whole (a shortest match would leave the value's tail).
_QUOTED = re.compile(r"'.*'|\".*\"", re.DOTALL)
REDACTED = "'…'"

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


# the last line of a traceback written into a message (pynetdicom logs its handlers'
# exceptions so): "ValueError: <message>"
_EXCEPTION_LINE = re.compile(
    r"^(\s*[A-Za-z_][\w.]*(?:Error|Exception|Warning|Exit|Interrupt)\w*): .*$", re.MULTILINE
)


def redact_quoted(text: str) -> str:
    """`text` with every quoted part replaced by ``'…'``, and the message of an exception
    written out in it (a traceback's last line) left out."""
    return _QUOTED.sub(REDACTED, _EXCEPTION_LINE.sub(r"\1 (message left out)", text))


def exception_without_values(exc: BaseException) -> str:
    """A traceback of `exc` and its causes: frames (file, line, function, source line) and
    exception types, no messages (they may quote a value) and no local variables."""
    blocks: list[str] = []  # the newest exception first; each with the link to its cause
    seen: set[int] = set()
    current: BaseException | None = exc
    link = ""
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        frames = traceback.extract_tb(current.__traceback__)
        kind = type(current)
        blocks.append(
            "Traceback (most recent call last):\n"
            + "".join(traceback.format_list(frames))
            + f"{kind.__module__}.{kind.__qualname__} (message left out)\n"
            + link
        )
        if current.__cause__ is not None:
            current = current.__cause__
            link = "\nThe above exception was the direct cause of the following:\n\n"
        elif current.__context__ is not None and not current.__suppress_context__:
            current = current.__context__
            link = "\nDuring handling of the above exception, another occurred:\n\n"
        else:
            current = None
    return "".join(reversed(blocks)).rstrip("\n")  # the oldest first, as Python prints


def _exc_of(exc_info: Any) -> BaseException | None:
    if isinstance(exc_info, BaseException):
        return exc_info
    if exc_info is True:
        exc_info = sys.exc_info()
    if isinstance(exc_info, tuple) and len(exc_info) == 3:
        found = exc_info[1]
        return found if isinstance(found, BaseException) else None
    return None


def structlog_exc_info(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: ``exc_info`` becomes ``exception``, rendered without values."""
    exc_info = event_dict.pop("exc_info", None)
    if exc_info:
        exc = _exc_of(exc_info)
        if exc is not None:
            event_dict["exception"] = exception_without_values(exc)
    return event_dict


class ValueFreeRecords(logging.Filter):
    """Makes a record fit for a log: quoted parts of its text redacted, its traceback
    rendered without messages. Never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_hexchange_redacted", False):
            return True
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: its parts are not shown
            message = str(record.msg)
        record.msg, record.args = redact_quoted(message), ()
        if record.exc_info:
            exc = _exc_of(record.exc_info)
            if exc is not None:
                record.exc_text = exception_without_values(exc)
        record._hexchange_redacted = True
        return True


_FILTER = ValueFreeRecords()
# loggers whose records are redacted wherever they end up (a handler added later, or none:
# Python's last-resort handler); their records propagate from here only
_LIBRARY_LOGGERS = ("pydicom", "py.warnings", "uvicorn.error", "uvicorn", "deidentify")


def install() -> None:
    """Redact every standard-library log record of this process (call after the process's
    logging handlers are set up; calling again covers handlers added since)."""
    logging.captureWarnings(True)
    for name in _LIBRARY_LOGGERS:
        _add(logging.getLogger(name))
    for logger in _all_loggers():
        for handler in logger.handlers:
            _add(handler)


def uninstall() -> None:
    """Undo `install` (for an embedding process, e.g. a test, that restores its logging)."""
    logging.captureWarnings(False)
    for logger in _all_loggers():
        logger.removeFilter(_FILTER)
        for handler in logger.handlers:
            handler.removeFilter(_FILTER)


def _all_loggers() -> list[logging.Logger]:
    return [logging.getLogger()] + [
        item
        for item in logging.root.manager.loggerDict.values()
        if isinstance(item, logging.Logger)
    ]


def _add(target: logging.Filterer) -> None:
    if _FILTER not in target.filters:
        target.addFilter(_FILTER)
