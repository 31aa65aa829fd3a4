"""Password hashing: argon2id through pwdlib (a small, maintained wrapper over argon2-cffi).

Chosen over hand-rolled hashing for its sane argon2id defaults and its `verify_and_update`,
which re-hashes on login when the parameters are raised later.
"""

from __future__ import annotations

from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 256


class WeakPassword(ValueError):
    pass


class PasswordHasher:
    def __init__(self) -> None:
        self._hash = PasswordHash((Argon2Hasher(),))
        # hashed once so that a login for an unknown user costs the same as for a known one
        self._dummy = self._hash.hash("hexchange-timing-equaliser")

    def check_strength(self, password: str) -> None:
        if len(password) < MIN_PASSWORD_LENGTH:
            raise WeakPassword(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
        if len(password) > MAX_PASSWORD_LENGTH:
            raise WeakPassword(f"the password must have at most {MAX_PASSWORD_LENGTH} characters")

    def hash(self, password: str) -> str:
        self.check_strength(password)
        return self._hash.hash(password)

    def verify(self, password: str, hashed: str | None) -> tuple[bool, str | None]:
        """(valid, new hash if the stored one should be upgraded). Constant work if no hash."""
        if hashed is None or len(password) > MAX_PASSWORD_LENGTH:
            self._hash.verify("not-the-password", self._dummy)
            return False, None
        return self._hash.verify_and_update(password, hashed)
