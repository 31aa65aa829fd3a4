"""Wire format version and the hard caps every parser enforces before doing cryptography."""

from __future__ import annotations

WIRE_VERSION = 1
"""Version of the sealed-bundle format; a header naming another version is refused."""

CHUNK_SIZE = 4 * 1024 * 1024
"""Default plaintext bytes per chunk; the chunk is also the unit of upload and resume."""

MAX_CHUNK_SIZE = 64 * 1024 * 1024
"""Largest chunk size a manifest may declare (bounds what a receiver buffers per chunk)."""

MAX_HEADER_BYTES = 1 << 20
"""Largest serialized sealed header accepted, checked before JSON parsing."""

MAX_STANZAS = 64
"""Most recipient key stanzas one header may carry."""

MAX_CHUNKS = 1 << 20
"""Most chunks one bundle may declare."""

MAX_PAYLOAD_MEMBERS = 100_000
"""Most instances one payload tar may list."""

MAX_CONTENTS_BYTES = 32 * 1024 * 1024
"""Largest `contents.json` member accepted in a payload tar."""
