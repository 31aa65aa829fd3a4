"""The learned text detector's own process: onnxruntime, the ONNX session and the network's
activations live here, not in the process that scrubs (issue 15: the agent's RSS).

`networker.py` starts `main` in a child interpreter and talks to it over a `multiprocessing`
Connection on a socket pair:

    child -> ("ready", None) | ("failed", reason)        once, after loading the model
    parent -> (shape, NetParams), then the frame's bytes  (8-bit gray, C order)
    child -> ("ok", [TextRegion, ...]) | ("error", reason)
    parent -> None                                        stop

Nothing here names frame content in a message. `load` and `probability` are also what the
benches call to time the network in-process.
"""

from __future__ import annotations

import hashlib
import signal
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from deidentify.pixels.netdetect import (
    DEFAULT_NET,
    FETCH_HINT,
    MODEL_SHA256,
    NetParams,
    TextRegion,
    regions_of,
    resized_shape,
    tile_starts,
    tiled_scale,
)
from deidentify.pixels.ocr import Gray8


class LoadFailed(RuntimeError):
    """The model could not be loaded (the message says why and what to do)."""


def load(path: Path, *, arena: bool = True) -> Any:
    """An onnxruntime session of the pinned model at `path`, on one thread.

    Memory patterns are off (frames differ in shape: a plan per shape would be kept). The CPU
    arena stays on (`arena`): without it the worker's peak grew with every new frame shape
    (384-478 MiB after four frames against 257 MiB, same CPU; bench/RESULTS.md, "text
    detector worker")."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LoadFailed(f"cannot read the text detection model {path}: {exc.strerror}") from None
    if hashlib.sha256(data).hexdigest() != MODEL_SHA256:
        raise LoadFailed(f"the text detection model {path} is not the pinned one: {FETCH_HINT}")
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.enable_mem_pattern = False
    options.enable_cpu_mem_arena = arena
    try:
        return onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise LoadFailed(f"onnxruntime cannot load {path.name}: {type(exc).__name__}") from None


def probability(
    session: Any, gray: Gray8, params: NetParams = DEFAULT_NET
) -> npt.NDArray[np.float32]:
    """The network's text probability map at the resized shape (`netdetect.resized_shape`), or
    for a large frame at its tiled scale (`netdetect.tiled_scale`), tile by tile."""
    if params.clahe > 0:
        gray = np.asarray(
            cv2.createCLAHE(
                clipLimit=params.clahe, tileGridSize=(params.clahe_tiles, params.clahe_tiles)
            ).apply(gray),
            np.uint8,
        )
    scale = tiled_scale(gray.shape[0], gray.shape[1], params)
    if scale is not None:
        return _tiled(session, gray, scale, params)
    rows, columns = resized_shape(gray.shape[0], gray.shape[1], params)
    resized = cv2.resize(gray, (columns, rows), interpolation=cv2.INTER_LINEAR)
    return _run(session, np.asarray(resized, np.uint8))


def _run(session: Any, image: Gray8) -> npt.NDArray[np.float32]:
    """The network on one 8-bit image (sides multiples of 32): its probability map."""
    rows, columns = image.shape
    plane = image.astype(np.float32) * np.float32(2 / 255) - np.float32(1)
    batch = np.ascontiguousarray(np.broadcast_to(plane, (1, 3, rows, columns)))
    name = session.get_inputs()[0].name
    out = session.run(None, {name: batch})[0]
    return np.asarray(out[0, 0], np.float32)


def _tiled(session: Any, gray: Gray8, scale: float, params: NetParams) -> npt.NDArray[np.float32]:
    """The probability map of a large frame at `scale`, from overlapping tiles of one shape
    (edge tiles padded by replicating the border); where tiles overlap, the larger value."""
    rows, columns = round(gray.shape[0] * scale), round(gray.shape[1] * scale)
    shrink = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    image = cv2.resize(gray, (columns, rows), interpolation=shrink)
    side = params.tile
    prob = np.zeros((rows, columns), np.float32)
    for top in tile_starts(rows, params):
        for left in tile_starts(columns, params):
            piece = image[top : top + side, left : left + side]
            height, width = piece.shape
            if (height, width) != (side, side):
                piece = cv2.copyMakeBorder(
                    piece, 0, side - height, 0, side - width, cv2.BORDER_REPLICATE
                )
            found = _run(session, np.asarray(piece, np.uint8))[:height, :width]
            view = prob[top : top + height, left : left + width]
            np.maximum(view, found, out=view)
    return prob


def regions(session: Any, gray: Gray8, params: NetParams = DEFAULT_NET) -> list[TextRegion]:
    """Text regions of an 8-bit frame (display polarity) as rotated rectangles in its pixels."""
    prob = probability(session, gray, params)
    return regions_of(prob, gray.shape[0], gray.shape[1], params)


def serve(conn: Connection, model: str) -> None:
    """The worker's main loop (see the module docstring); returns when the parent says stop
    or goes away."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    try:
        session = load(Path(model))
    except LoadFailed as exc:
        conn.send(("failed", str(exc)))
        return
    conn.send(("ready", None))
    while True:
        try:
            request = conn.recv()
            if request is None:
                return
            shape, params = request
            data = conn.recv_bytes()
        except (EOFError, OSError):
            return  # the parent is gone
        gray = np.frombuffer(data, np.uint8).reshape(shape)
        try:
            reply: tuple[str, object] = ("ok", regions(session, gray, params))
        except Exception as exc:  # onnxruntime raises its own types (Fail, RuntimeException)
            reply = ("error", f"the text detection network failed: {type(exc).__name__}")
        conn.send(reply)


def main(argv: list[str]) -> None:
    """The worker's entry: argv is [socket fd, model path] (see `networker._Worker`)."""
    fd, model = argv
    serve(Connection(int(fd)), model)
