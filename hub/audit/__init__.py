"""The hub's audit log: append (`record`), verify, checkpoint, query, FHIR export."""

from hub.audit.chain import (
    GENESIS,
    AuditBroken,
    VerifyReport,
    checkpoint,
    record,
    verify_chain,
)

__all__ = ["GENESIS", "AuditBroken", "VerifyReport", "checkpoint", "record", "verify_chain"]
