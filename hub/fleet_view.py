"""The admin's view of the fleet (`hexchange-hub site list`): every value a site controls is
re-validated and shown as plain text, never as rich markup or terminal control sequences."""

from __future__ import annotations

import unicodedata

from rich.table import Table
from rich.text import Text
from sqlmodel import Session, select

from certs.registry import CADirectory
from hub.fleet.service import fleet
from hub.models import QuotaRefusal
from hub.principals import Principal
from wire.api import one_line

# Control, format (bidi overrides, zero-width), surrogate, private-use and unassigned
# characters, and line/paragraph separators: none of them belongs in a table cell.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def plain(value: object, limit: int = 120) -> Text:
    """`value` as one line of inert text: no markup is parsed, no escape reaches the terminal."""
    text = "".join(
        " " if unicodedata.category(ch) in _UNSAFE_CATEGORIES else ch for ch in str(value)
    )
    return Text(one_line(text, limit))


def quota_reasons(session: Session) -> dict[tuple[str, str], str]:
    """(org, site) -> why the site's last request was refused by a quota, as one line."""
    return {
        (row.org, row.site): one_line(
            f"{row.limit_name} x{row.refusals} at {row.at:%Y-%m-%d %H:%M}: {row.detail}", 160
        )
        for row in session.exec(select(QuotaRefusal))
    }


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def _count(value: int | None) -> str:
    return f"{value:,}" if value is not None else "-"


def site_table(session: Session, ca: CADirectory) -> Table:
    """Every site with what its agent last reported (re-validated), as inert text."""
    table = Table(
        "org", "site", "name", "enrolled", "cert expires", "last seen", "agent", "queue", "oldest",
        "pending", "disk free", "held", "quar.", "inbound", "policy", "last error", "quota",
    )  # fmt: skip
    quotas = quota_reasons(session)
    for row in fleet(session, ca, Principal.cli()):
        seen = Text(f"{row.last_seen_at:%Y-%m-%d %H:%M:%S}" if row.last_seen_at else "never")
        if row.stale:
            seen = Text(f"{seen.plain} (stale)", style="yellow")
        expires = Text(
            f"{row.certificate_expires_at:%Y-%m-%d %H:%M}" if row.certificate_expires_at else "-"
        )
        if row.revoked:
            expires = Text("revoked", style="red")
        reported = "-" if row.policy_version_reported is None else str(row.policy_version_reported)
        table.add_row(
            plain(row.org), plain(row.site), plain(row.name, 40), "yes" if row.enrolled else "no",
            expires, seen,
            plain(row.agent_version or "-", 64), _count(row.queue_depth),
            _age(row.oldest_item_age_s), _count(row.bytes_pending),
            f"{row.disk_free_bytes / 1e9:.1f} GB" if row.disk_free_bytes is not None else "-",
            _count(row.held_studies), _count(row.quarantined_instances),
            _count(row.inbound_waiting), f"{reported}/{row.policy_version_current}",
            plain("invalid heartbeat" if row.heartbeat_unreadable else row.last_error or "", 120),
            plain(quotas.get((row.org, row.site), ""), 160),
        )  # fmt: skip
    return table
