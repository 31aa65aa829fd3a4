"""Errors raised by the wire package.

Messages name what is wrong (which field, which chunk, which limit) and never carry payload
content or key material, so they are safe to log and to return in problem responses.
"""

from __future__ import annotations


class WireError(Exception):
    """Base class for every error the wire package raises."""


class HeaderTooLarge(WireError):
    """A serialized header exceeds MAX_HEADER_BYTES."""


class MalformedHeader(WireError):
    """A header is not valid JSON, does not match the schema, or is internally inconsistent."""


class SignatureInvalid(WireError):
    """A signature (header, receipt, site key, certificate) does not verify."""


class NotARecipient(WireError):
    """The bundle holds no stanza for this key, or the stanza does not open with it."""


class TamperedChunk(WireError):
    """A chunk's digest, length, position or authentication tag does not match the header."""

    def __init__(self, index: int, reason: str = "chunk does not match the sealed header") -> None:
        super().__init__(f"chunk {index}: {reason}")
        self.index = index


class TruncatedBundle(WireError):
    """Fewer chunks arrived than the header declares."""


class UnsupportedVersion(WireError):
    """A header names a wire version this code does not speak."""


class PayloadError(WireError):
    """The plaintext payload tar is malformed, unsafe, or disagrees with its contents list."""
