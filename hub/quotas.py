"""Per-site quotas on bundles, bytes and pending (incomplete) bundles.

Checked when a site starts a NEW bundle (its header), after the header is verified and before
anything is stored. A refusal is a 429 (or 413 when one bundle alone is over the byte quota)
problem+json naming the limit, and is kept (`QuotaRefusal`, one row per site) so that
`hexchange-hub site list` shows the admin why a site is held back.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import func
from sqlmodel import Session, col, select

from certs.identity import SiteIdentity
from hub.errors import HubError
from hub.models import Bundle, QuotaRefusal, utcnow
from hub.settings import HubSettings

WINDOW = dt.timedelta(hours=24)


class QuotaExceeded(HubError):
    title = "Quota exceeded"

    def __init__(self, detail: str, *, limit_name: str, status: int = 429) -> None:
        super().__init__(detail)
        self.limit_name = limit_name
        self.status = status


@dataclass(frozen=True)
class QuotaLimits:
    pending_bundles: int
    bundles_per_day: int
    bytes_per_day: int

    @classmethod
    def from_settings(cls, settings: HubSettings) -> QuotaLimits:
        return cls(
            pending_bundles=settings.quota_pending_bundles,
            bundles_per_day=settings.quota_bundles_per_day,
            bytes_per_day=settings.quota_bytes_per_day,
        )


def check_new_bundle(
    session: Session, identity: SiteIdentity, limits: QuotaLimits, payload_bytes: int
) -> None:
    """Raise QuotaExceeded (and record it) if a new bundle of `payload_bytes` is over a quota."""
    mine = (col(Bundle.sender_org) == identity.org) & (col(Bundle.sender_site) == identity.site)
    pending = session.exec(
        select(func.count()).select_from(Bundle).where(mine, col(Bundle.state) == "receiving")
    ).one()
    if pending >= limits.pending_bundles:
        _refuse(
            session, identity, "pending_bundles",
            f"{pending} bundles of this site are still incomplete (limit {limits.pending_bundles});"
            " finish or abandon those uploads before starting new ones",
        )  # fmt: skip
    since = utcnow() - WINDOW
    count, total = session.exec(
        select(func.count(), func.coalesce(func.sum(Bundle.payload_bytes), 0))
        .select_from(Bundle)
        .where(mine, col(Bundle.created_at) >= since)
    ).one()
    if count >= limits.bundles_per_day:
        _refuse(
            session, identity, "bundles_per_day",
            f"this site started {count} bundles in the last 24 hours "
            f"(limit {limits.bundles_per_day}); try again later or ask the network admin",
        )  # fmt: skip
    if payload_bytes > limits.bytes_per_day:
        _refuse(
            session, identity, "bytes_per_day",
            f"this bundle alone holds {payload_bytes} bytes, over the site's 24-hour limit of "
            f"{limits.bytes_per_day}; ask the network admin to raise the limit",
            status=413,
        )  # fmt: skip
    if int(total) + payload_bytes > limits.bytes_per_day:
        _refuse(
            session, identity, "bytes_per_day",
            f"this site sent {int(total)} bytes in the last 24 hours; this bundle "
            f"({payload_bytes} bytes) would pass the limit of {limits.bytes_per_day}; "
            "try again later or ask the network admin",
        )  # fmt: skip


def _refuse(
    session: Session, identity: SiteIdentity, limit_name: str, detail: str, status: int = 429
) -> None:
    row = session.get(QuotaRefusal, (identity.org, identity.site))
    if row is None:
        row = QuotaRefusal(org=identity.org, site=identity.site, limit_name=limit_name, detail="")
    row.limit_name = limit_name
    row.detail = detail[:500]
    row.refusals += 1
    row.at = utcnow()
    session.add(row)
    session.commit()
    raise QuotaExceeded(detail, limit_name=limit_name, status=status)


def install(app: FastAPI) -> None:
    """The problem+json answer for a quota refusal: 429 or 413, naming the limit."""

    @app.exception_handler(QuotaExceeded)
    async def _quota(_request: Request, exc: QuotaExceeded) -> JSONResponse:
        headers = {"retry-after": "3600"} if exc.status == 429 else None
        return JSONResponse(
            status_code=exc.status,
            content={
                "type": "about:blank",
                "title": exc.title,
                "status": exc.status,
                "detail": exc.detail,
                "limit": exc.limit_name,
            },
            media_type="application/problem+json",
            headers=headers,
        )
