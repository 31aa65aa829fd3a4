"""The admin's view of the fleet (`hexchange-hub site list`): every value a site controls is
re-validated and shown as plain text, never as rich markup or terminal control sequences."""

from __future__ import annotations

import json
import unicodedata

from pydantic import ValidationError
from rich.table import Table
from rich.text import Text
from sqlmodel import Session, select

from hub.models import QuotaRefusal, Site
from wire.api import Heartbeat, one_line

# Control, format (bidi overrides, zero-width), surrogate, private-use and unassigned
# characters, and line/paragraph separators: none of them belongs in a table cell.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def plain(value: object, limit: int = 120) -> Text:
    """`value` as one line of inert text: no markup is parsed, no escape reaches the terminal."""
    text = "".join(
        " " if unicodedata.category(ch) in _UNSAFE_CATEGORIES else ch for ch in str(value)
    )
    return Text(one_line(text, limit))


def _heartbeat(raw: str | None) -> Heartbeat | str | None:
    """The stored heartbeat, validated again; a string says why it cannot be shown."""
    if not raw:
        return None
    try:
        return Heartbeat.model_validate(json.loads(raw))
    except (ValueError, ValidationError):
        return "invalid heartbeat"


def quota_reasons(session: Session) -> dict[tuple[str, str], str]:
    """(org, site) -> why the site's last request was refused by a quota, as one line."""
    return {
        (row.org, row.site): one_line(
            f"{row.limit_name} x{row.refusals} at {row.at:%Y-%m-%d %H:%M}: {row.detail}", 160
        )
        for row in session.exec(select(QuotaRefusal))
    }


def site_table(session: Session) -> Table:
    table = Table(
        "org", "site", "enrolled", "certificate", "last seen", "queue", "oldest",
        "pending bytes", "disk free", "policy", "last error", "quota",
    )  # fmt: skip
    quotas = quota_reasons(session)
    for row in session.exec(select(Site).order_by(Site.org, Site.site)):
        beat = _heartbeat(row.last_heartbeat)
        if isinstance(beat, Heartbeat):
            oldest = beat.oldest_item_age_s
            reported = [
                str(beat.queue_depth),
                f"{oldest:.0f}s" if oldest is not None else "-",
                f"{beat.bytes_pending:,}",
                f"{beat.disk_free_bytes / 1e9:.1f} GB",
                str(beat.policy_version) if beat.policy_version is not None else "-",
                beat.last_error or "",
            ]
        else:
            reported = ["-"] * 5 + [beat or ""]
        table.add_row(
            plain(row.org),
            plain(row.site),
            "yes" if row.enrolled_at else "no",
            plain(row.certificate_serial or "-"),
            f"{row.last_seen_at:%Y-%m-%d %H:%M:%S}" if row.last_seen_at else "never",
            *(plain(value, 200) for value in reported),
            plain(quotas.get((row.org, row.site), ""), 160),
        )
    return table
