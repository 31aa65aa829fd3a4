"""A cap on glibc's malloc arenas for the long-running agent.

glibc gives threads that allocate at the same time arenas of their own (up to 8 per core), and
memory freed in one arena is not handed to another thread's: with the agent's association,
seal, upload and pixel-scrub threads each working through megabytes of frames and chunks, the
process holds tens of MiB that are free but resident. Two arenas keep a 2 GiB multi-frame
instance's receive, de-identification with pixel scrub, seal and upload inside the agent's
200 MB target (`bench/agent_multiframe_bench.py`: 187 -> 171 MiB at 0.25 GiB in one run).
An operator's own `MALLOC_ARENA_MAX` wins; on a C library without `mallopt` nothing changes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_ARENA_MAX = -8  # glibc's malloc.h
DEFAULT_ARENAS = 2


def cap_malloc_arenas(count: int = DEFAULT_ARENAS) -> bool:
    """Limit the arenas malloc creates from now on; True if the C library took the limit."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False  # read by glibc itself at start: the operator's choice stands
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_ARENA_MAX, count))
