"""OpenCV, imported on its first use rather than with the package.

The scrubber's detectors (`textdetect`, `netdetect`) need it; an agent that shares only
identified studies never scrubs, and OpenCV is ~30 MB of its resident memory (issue 15: the
agent stays under 200 MB). Type checkers see the real module.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING, Any


class _OnFirstUse:
    """Stands for the `cv2` module; imports it at the first attribute asked for."""

    def __init__(self) -> None:
        self._module: ModuleType | None = None

    def __getattr__(self, name: str) -> Any:
        module = self._module
        if module is None:
            module = importlib.import_module("cv2")
            module.setNumThreads(1)  # one core per worker: the agent runs a process per core
            self._module = module
        return getattr(module, name)


if TYPE_CHECKING:
    import cv2 as cv2
else:
    cv2 = _OnFirstUse()
