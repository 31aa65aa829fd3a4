"""Domain errors of the hub. The HTTP edge (main.py) maps them to problem+json responses."""

from __future__ import annotations


class HubError(Exception):
    """Base class; `detail` says what was wrong and what to do, and never holds patient data."""

    title = "Hub error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotAuthenticated(HubError):
    title = "Client certificate required"


class Forbidden(HubError):
    title = "Not allowed for this site"


class NotFound(HubError):
    title = "Not found"


class Conflict(HubError):
    title = "Conflict"


class InvalidRequest(HubError):
    title = "Invalid request"


class EnrollmentRefused(HubError):
    title = "Enrollment refused"


class SignInRequired(NotAuthenticated):
    title = "Sign-in required"


class TooManyRequests(HubError):
    title = "Too many requests"

    def __init__(self, detail: str, *, retry_after_s: int = 60) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s
