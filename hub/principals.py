"""Who is acting: a person (session or API token), a site (mutual TLS), or the hub's own CLI."""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal


class Role(StrEnum):
    NETWORK_ADMIN = "network-admin"
    ORG_ADMIN = "org-admin"
    CLINICIAN = "clinician"
    RESEARCHER = "researcher"


@dataclass(frozen=True)
class Principal:
    kind: Literal["user", "cli", "site"]
    name: str
    role: Role | None
    org: str | None
    user_id: int | None = None
    address: str = ""

    @property
    def actor(self) -> str:
        """How the audit log names this principal (never a patient)."""
        return f"{self.kind}:{self.name}"

    @property
    def is_network_admin(self) -> bool:
        return self.role is Role.NETWORK_ADMIN

    def sees_org(self, org: str) -> bool:
        return self.is_network_admin or (self.org is not None and self.org == org)

    @classmethod
    def cli(cls) -> Principal:
        """Whoever has a shell on the hub host: acts as a network admin, audited by OS user."""
        try:
            user = getpass.getuser()
        except OSError:
            user = "unknown"
        return cls(kind="cli", name=user, role=Role.NETWORK_ADMIN, org=None)

    @classmethod
    def site(cls, org: str, site: str) -> Principal:
        return cls(kind="site", name=f"{org}/{site}", role=None, org=org)
