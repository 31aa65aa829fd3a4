"""The `[query_retrieve]` section: the agent's Query/Retrieve SCP for the site's own PACS and
viewers, which forwards their queries to other organizations.

```toml
[query_retrieve]
ae_title = "HEXCHANGE_QR"
port = 11113
allowed_calling_aes = ["PACS_B", "VIEWER1"]     # only these may query (required)
ask_orgs = ["org-a"]                            # whom to ask; empty (default): every org
                                                # whose sharing policy sends identified
                                                # studies to this one (the hub knows)
find_timeout_seconds = 8                        # how long a C-FIND waits for their answers
complete_when_back = false                      # an offline org answers when it returns
retrieve_timeout_seconds = 300                  # a C-MOVE waits this long; then background
move_destinations = { PACS_B = "10.0.0.5:104" } # C-MOVE destinations by AE title
```
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _ae(value: str) -> str:
    value = value.strip()
    if not 0 < len(value) <= 16 or "\\" in value:
        raise ValueError(f"{value!r} is not an AE title (1 to 16 characters, no backslash)")
    return value


class QrSection(_Model):
    enabled: bool = True
    ae_title: str = "HEXCHANGE_QR"
    host: str = "127.0.0.1"
    port: int = Field(default=11113, ge=1, le=65535)
    allowed_calling_aes: list[str] = Field(
        min_length=1, description="calling AE titles allowed to query (configured AEs only)"
    )
    ask_orgs: list[str] = Field(default_factory=list, max_length=64)
    find_timeout_seconds: float = Field(default=8.0, gt=0, le=60)
    complete_when_back: bool = False
    retrieve_timeout_seconds: float = Field(default=300.0, gt=0)
    move_destinations: dict[str, str] = Field(default_factory=dict)

    @field_validator("ae_title")
    @classmethod
    def _own(cls, value: str) -> str:
        return _ae(value)

    @field_validator("allowed_calling_aes")
    @classmethod
    def _callers(cls, value: list[str]) -> list[str]:
        return [_ae(v) for v in value]

    @field_validator("ask_orgs")
    @classmethod
    def _orgs(cls, value: list[str]) -> list[str]:
        import re

        for org in value:
            if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", org):
                raise ValueError(f"{org!r} is not an organization id")
        return value

    @field_validator("move_destinations")
    @classmethod
    def _destinations(cls, value: dict[str, str]) -> dict[str, str]:
        out = {}
        for ae, address in value.items():
            host, sep, port = address.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"move destination {ae}: {address!r} is not host:port")
            out[_ae(ae)] = address
        return out

    def destination(self, ae_title: str) -> tuple[str, int] | None:
        address = self.move_destinations.get(ae_title.strip())
        if address is None:
            return None
        host, _, port = address.rpartition(":")
        return host, int(port)
