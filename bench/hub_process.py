"""A hub started by a bench as its own process: waiting until its public listener answers.
(Free ports come from `tests.federation.free_port`, as for the end-to-end tests.)"""

from __future__ import annotations

import time

import httpx


def wait_for_hub(base: str, context: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            response = httpx.get(base + "/api/v1/health", verify=context, timeout=2)  # type: ignore[arg-type]
            if response.status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError("the hub did not start")
