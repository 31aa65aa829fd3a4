"""Deliveries: complete bundles queued for each recipient organization until a site acks."""

from __future__ import annotations

import json

from sqlmodel import Session, col, select

from certs.identity import SiteIdentity
from hub import audit
from hub.errors import NotFound
from hub.models import Bundle, Delivery, SiteCertificate, aware, utcnow
from wire.api import Delivery as DeliveryModel


def pending_for(session: Session, identity: SiteIdentity, limit: int) -> list[DeliveryModel]:
    rows = session.exec(
        select(Delivery, Bundle)
        .where(Delivery.bundle_id == Bundle.bundle_id)
        .where(Delivery.recipient_org == identity.org, Delivery.state == "queued")
        .order_by(col(Delivery.created_at))
        .limit(limit)
    ).all()
    out: list[DeliveryModel] = []
    for delivery, bundle in rows:
        sender = session.get(SiteCertificate, bundle.signer_serial)
        out.append(
            DeliveryModel(
                bundle_id=bundle.bundle_id,
                sender_org=bundle.sender_org,
                sender_site=bundle.sender_site,
                mode=bundle.mode,
                instance_count=bundle.instance_count,
                payload_bytes=bundle.payload_bytes,
                chunk_count=bundle.chunk_count,
                created_at=aware(delivery.created_at),
                sender_certificate_pem=sender.certificate_pem if sender else "",
            )
        )
    return out


def require_recipient(session: Session, identity: SiteIdentity, bundle_id: str) -> Bundle:
    bundle = session.get(Bundle, bundle_id)
    if (
        bundle is None
        or bundle.state != "complete"
        or identity.org not in json.loads(bundle.recipients)
    ):
        raise NotFound(f"no delivery {bundle_id} for organization {identity.org}")
    return bundle


def acknowledge(session: Session, identity: SiteIdentity, bundle_id: str) -> None:
    require_recipient(session, identity, bundle_id)
    delivery = session.get(Delivery, (bundle_id, identity.org))
    if delivery is None:
        raise NotFound(f"no delivery {bundle_id} for organization {identity.org}")
    if delivery.state == "acked":
        return
    delivery.state = "acked"
    delivery.acked_at = utcnow()
    delivery.acked_by_site = identity.site
    session.add(delivery)
    audit.record(
        session,
        actor=f"site:{identity.org}/{identity.site}",
        action="delivery.ack",
        subject=bundle_id,
    )
    session.commit()
