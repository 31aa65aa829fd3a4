"""The learned text detector run in a child process, as tesseract is: onnxruntime, the model
and the network's activations (~+150 MB) stay out of the scrubbing process (issue 15).

    regions = networker.find_regions(gray, params)   # netdetect.TextRegion list; NetFailed

One long-lived worker per process, started on first use as a fresh interpreter (as the
"spawn" start method, not fork: the agent has threads; by `subprocess`, so that the caller's
main script is not run again in the worker, as multiprocessing's spawn does), loading the
model once (`netsession.serve`). Frames go over a socket pair wrapped in a `multiprocessing`
`Connection` (what `multiprocessing.Pipe` is) as their bytes plus (shape, params); regions
come back.
One frame at a time (a lock: the agent's threads take turns; the worker runs one thread).
A process of its own rather than `ProcessPoolExecutor`: a frame that hangs must be stopped by
killing the worker, which the executor does not offer.

A worker that dies (killed, a crash in native code) or takes longer than `FRAME_TIMEOUT` on a
frame (it is then killed) raises `NetFailed` for that frame, naming no frame content; the
scrubber falls back or quarantines (policy `learned`), and the next frame starts a fresh
worker. A model the worker cannot load is remembered (`netdetect.unavailable_reason` says
so) and not retried. The worker is stopped at exit; it also exits when this process is gone
(its end of the pipe closes).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import socket
import subprocess
import sys
import threading
from multiprocessing.connection import Connection

import numpy as np

from deidentify.pixels import netdetect
from deidentify.pixels.netdetect import DEFAULT_NET, NetFailed, NetParams, TextRegion
from deidentify.pixels.ocr import Gray8

START_TIMEOUT = 120.0  # seconds: spawn, imports and the model, on a busy 2-core machine
FRAME_TIMEOUT = 60.0  # seconds for one frame (~0.15 s for 512 x 512, ~0.6 s at 1600 x 1600)
STOP_TIMEOUT = 5.0
_ENTRY = "import sys; from deidentify.pixels.netsession import main; main(sys.argv[1:])"


class WorkerLost(NetFailed):
    """The worker died or hung on a frame; it is gone and the next frame starts another."""


class _Worker:
    """One child process and its end of the pipe."""

    def __init__(self, model: str) -> None:
        ours, theirs = socket.socketpair()  # what multiprocessing.Pipe() is on POSIX
        with theirs:
            self.process = subprocess.Popen(  # a fresh interpreter, as "spawn", without
                [sys.executable, "-c", _ENTRY, str(theirs.fileno()), model],  # re-running
                pass_fds=(theirs.fileno(),),  # the caller's __main__ (multiprocessing does)
                stdin=subprocess.DEVNULL,
            )
        self.conn = Connection(ours.detach())  # only the child holds its end: death is EOF

    def ready(self) -> str | None:
        """None when the model is loaded; else why not (the worker has exited)."""
        if not self.conn.poll(START_TIMEOUT):
            raise WorkerLost(f"the text detection worker did not start in {START_TIMEOUT:.0f} s")
        status, reason = self.conn.recv()
        return None if status == "ready" else str(reason)

    def ask(self, gray: Gray8, params: NetParams) -> list[TextRegion]:
        self.conn.send((gray.shape, params))
        self.conn.send_bytes(np.ascontiguousarray(gray).reshape(-1).data)  # no copy, no pickle
        if not self.conn.poll(FRAME_TIMEOUT):
            raise WorkerLost(
                f"the text detection worker took more than {FRAME_TIMEOUT:.0f} s on a frame "
                "and was stopped"
            )
        status, payload = self.conn.recv()
        if status != "ok":
            raise NetFailed(str(payload))
        return list(payload)

    def stop(self, *, kill: bool) -> None:
        if not kill:
            with contextlib.suppress(OSError):
                self.conn.send(None)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(STOP_TIMEOUT)
        if self.process.poll() is None:
            self.process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(STOP_TIMEOUT)
        self.conn.close()


_lock = threading.Lock()
_worker: _Worker | None = None
_registered = False


def _forget_after_fork() -> None:
    """A forked child (a `ProcessPoolExecutor` worker of hexchange-deid) must not share the
    parent's pipe or its lock: it starts a worker of its own when it needs one."""
    global _lock, _worker
    _lock, _worker = threading.Lock(), None


os.register_at_fork(after_in_child=_forget_after_fork)


def find_regions(gray: Gray8, params: NetParams = DEFAULT_NET) -> list[TextRegion]:
    """Text regions of an 8-bit frame (display polarity), from the worker; `NetFailed` if the
    detector is unavailable or the worker fails on this frame."""
    if gray.ndim != 2 or min(gray.shape) < params.min_frame:
        return []
    missing = netdetect.unavailable_reason()
    if missing is not None:
        raise NetFailed(f"learned text detector unavailable: {missing}")
    global _worker, _registered
    with _lock:
        if _worker is None:
            if not _registered:
                atexit.register(shutdown)
                _registered = True
            try:
                worker = _Worker(str(netdetect.model_path()))
            except OSError as exc:  # no process or descriptor left: this frame goes without
                reason = f"cannot start the text detection worker: {exc.strerror}"
                raise WorkerLost(reason) from None
            try:
                problem = worker.ready()
            except (WorkerLost, EOFError, OSError) as exc:
                worker.stop(kill=True)
                raise _died(worker, exc) from None
            if problem is not None:
                worker.stop(kill=True)
                netdetect.record_load_failure(problem)
                raise NetFailed(f"learned text detector unavailable: {problem}")
            _worker = worker
        try:
            return _worker.ask(gray, params)
        except (WorkerLost, EOFError, OSError) as exc:  # the next frame gets a fresh worker
            failed, _worker = _worker, None
            failed.stop(kill=True)
            raise _died(failed, exc) from None


def _died(worker: _Worker, exc: BaseException) -> NetFailed:
    if isinstance(exc, NetFailed):
        return exc
    code = worker.process.poll()
    return WorkerLost(f"the text detection worker died (exit code {code}): {type(exc).__name__}")


def worker_pid() -> int | None:
    """The running worker's process id (None before first use or after a failure)."""
    with _lock:
        return None if _worker is None else _worker.process.pid


def shutdown() -> None:
    """Stop the worker (at exit; a later frame starts a new one)."""
    global _worker
    with _lock:
        if _worker is not None:
            _worker.stop(kill=False)
            _worker = None
