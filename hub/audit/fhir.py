"""Audit events as FHIR R4 AuditEvent resources in a `collection` Bundle.

Codes: type from the DICOM audit vocabulary (DCM 110110 Patient Record is never used: no event
names a patient); action C/R/U/D/E from the HTTP method or the domain verb; outcome 0 success,
4 minor failure (refused), 8 serious failure.
"""

from __future__ import annotations

from typing import Any

from hub.audit.query import EventView

_DCM = "http://dicom.nema.org/resources/ontology/DCM"
_TYPES = {
    "login": ("110114", "User Authentication"),
    "bundle": ("110106", "Export"),
    "delivery": ("110107", "Import"),
    "site": ("110113", "Security Alert"),
    "token": ("110113", "Security Alert"),
    "user": ("110136", "Security Roles Changed"),
    "policy": ("110131", "Software Configuration"),
    "org": ("110131", "Software Configuration"),
}
_DEFAULT_TYPE = ("110100", "Application Activity")
_OUTCOME = {"success": "0", "denied": "4", "error": "8"}


def _action(event: EventView) -> str:
    verb = event.action.split(" ", 1)[0].split(".")[-1].upper()
    return {
        "GET": "R", "HEAD": "R", "POST": "C", "PUT": "U", "PATCH": "U", "DELETE": "D",
        "CREATE": "C", "ADD": "C", "ISSUE": "C", "SET": "U", "UPDATE": "U", "REMOVE": "D",
        "REVOKE": "D", "CANCEL": "D",
    }.get(verb, "E")  # fmt: skip


def to_fhir(event: EventView) -> dict[str, Any]:
    family = event.action.split(" ", 1)[0].split(".")[0].lower()
    code, display = _TYPES.get(family, _DEFAULT_TYPE)
    agent: dict[str, Any] = {"who": {"display": event.actor}, "requestor": True}
    if event.address:
        agent["network"] = {"address": event.address, "type": "2"}
    resource: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": f"hexchange-{event.seq}",
        "type": {"system": _DCM, "code": code, "display": display},
        "subtype": [{"system": "urn:hexchange:audit-action", "code": event.action}],
        "action": _action(event),
        "recorded": event.at.isoformat(),
        "outcome": _OUTCOME.get(event.outcome, "8"),
        "agent": [agent],
        "source": {"observer": {"display": "hexchange-hub"}},
    }
    entity: dict[str, Any] = {}
    if event.subject:
        entity["what"] = {"display": event.subject}
    if event.detail:
        entity["description"] = event.detail[:1000]
    if event.org:
        entity["securityLabel"] = [{"system": "urn:hexchange:org", "code": event.org}]
    if entity:
        resource["entity"] = [entity]
    return resource


def bundle(events: list[EventView]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "total": len(events),
        "entry": [{"resource": to_fhir(e)} for e in events],
    }
