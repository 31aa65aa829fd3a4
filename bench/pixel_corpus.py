"""The burned-text corpus measured through the scrubber (imported by bench/pixel_bench.py).

    .venv/bin/python bench/pixel_bench.py --detector [--write] [--quick]

Images: `tests/factories/burned_text.py` (pydicom's CT/MR/NM anatomy with identifying text
burned in: 12 fonts, heights 7-40 px, contrast 15-100 %, anti-aliased or not, rotated,
inverted, over anatomy; noise on a third, lossy JPEG on a fifth, MONOCHROME1 on a seventh).
A box is removed when at least 98 % of its ink pixels lie in boxes the scrubber blanked;
unchanged: pixels outside every text box (grown by 3 px) equal before and after.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt

from deidentify.pixels import PixelPolicy, RuleSet, TesseractBackend, netdetect, netsession, scrub
from deidentify.pixels.frames import decode, render_gray8
from deidentify.pixels.netdetect import DEFAULT_NET, NetParams, TextRegion
from deidentify.pixels.textdetect import find_text
from tests.deidentify.pixels.synth import corner_texts, rgb_image
from tests.factories.burned_text import ANATOMY, Sample, anatomy, burn, random_burns

_sessions: list[object] = []


def net_session() -> object:
    """The network in this process (the bench times it; the scrubber runs it in a worker)."""
    if not _sessions:
        _sessions.append(netsession.load(netdetect.model_path()))
    return _sessions[0]


def learned_in_process(
    gray: npt.NDArray[np.uint8], params: NetParams = DEFAULT_NET
) -> list[TextRegion]:
    """The learned regions of `gray`, the network run in this process."""
    if min(gray.shape) < params.min_frame:
        return []
    return netsession.regions(net_session(), gray, params)


HEIGHTS = (7, 9, 12, 16, 24, 40)
CONTRASTS = (0.15, 0.3, 0.6, 1.0)
# every detected line blanked: the classical detector alone, and with the learned stage (default)
DETECTOR_ONLY = PixelPolicy(rules=RuleSet(), ocr_enabled=False, learned="off")
LEARNED = PixelPolicy(rules=RuleSet(), ocr_enabled=False, learned="auto")
OCR_ONLY = PixelPolicy(rules=RuleSet(), text="ocr", detect=None, learned="off")  # the old design


@dataclass
class Score:
    removed: int = 0
    total: int = 0
    quarantined: int = 0
    instances: int = 0
    unchanged: list[float] | None = None
    by: dict[tuple[str, str], list[int]] = field(default_factory=dict)  # -> [removed, boxes]
    partly: int = 0  # missed boxes with some of their ink blanked (the rest: not found)
    worst: list[tuple[float, str]] = field(default_factory=list)  # (unchanged, image)

    def add(self, other: Score) -> None:
        self.removed += other.removed
        self.total += other.total
        self.quarantined += other.quarantined
        self.instances += other.instances
        self.unchanged = (self.unchanged or []) + (other.unchanged or [])
        self.partly += other.partly
        self.worst = sorted(self.worst + other.worst)[:8]
        for key, (removed, total) in other.by.items():
            counts = self.by.setdefault(key, [0, 0])
            counts[0] += removed
            counts[1] += total


def corpus(quick: bool, seed: int = 7) -> list[tuple[int, float, Sample]]:
    rng = np.random.default_rng(seed)
    names = list(ANATOMY)
    out = []
    repeats = 1 if quick else 2
    i = 0
    for height in HEIGHTS:
        for contrast in CONTRASTS:
            for _ in range(repeats):
                for name in names:
                    base = anatomy(name)
                    rows, columns = base.pixels.shape
                    specs = random_burns(
                        rng, rows, columns, heights=(height,), contrasts=(contrast,), count=3
                    )
                    sample = burn(
                        base,
                        specs,
                        noise=0.01 if i % 3 == 0 else 0.0,
                        jpeg_quality=70 if i % 5 == 0 else None,
                        monochrome1=i % 7 == 0,
                        seed=i,
                    )
                    out.append((height, contrast, sample))
                    i += 1
    return out


def score(sample: Sample, policy: PixelPolicy, ocr: TesseractBackend | None) -> Score:
    result = scrub(sample.ds, policy, ocr)
    total = sum(1 for t in sample.boxes if t.identifying)
    if result.dataset is None:
        return Score(0, total, 1, 1, [])
    before = decode(sample.ds).frames[0]
    after = decode(result.dataset).frames[0]
    blanked = np.zeros(before.shape, bool)
    for box in result.boxes.get(0, []):
        blanked[box.top : box.bottom, box.left : box.right] = True
    outside = np.ones(before.shape, bool)
    removed = partly = 0
    by: dict[tuple[str, str], list[int]] = {}
    for truth in sample.boxes:
        g = truth.box.grow(3)
        outside[max(g.top, 0) : g.bottom, max(g.left, 0) : g.right] = False
        if truth.identifying and truth.ink.any():
            share = float(blanked[truth.ink].mean())
            hit = share >= 0.98
            removed += hit
            partly += (not hit) and share > 0.05
            spec = truth.spec
            for key in (("font", spec.font.rsplit(".", 1)[0]), ("angle", f"{spec.angle:g} deg"),
                        ("image", sample.anatomy), ("inverted", str(spec.inverted)),
                        ("antialias", str(spec.antialias))):  # fmt: skip
                counts = by.setdefault(key, [0, 0])
                counts[0] += hit
                counts[1] += 1
    unchanged = float((before == after)[outside].mean())
    what = f"{sample.anatomy} {max((t.spec.height for t in sample.boxes), default=0)} px"
    return Score(removed, total, 0, 1, [unchanged], by, partly, [(unchanged, what)])


def table(
    samples: list[tuple[int, float, Sample]], policy: PixelPolicy, ocr: TesseractBackend | None
) -> dict[tuple[int, float], Score]:
    cells: dict[tuple[int, float], Score] = {}
    for height, contrast, sample in samples:
        cells.setdefault((height, contrast), Score(unchanged=[])).add(score(sample, policy, ocr))
    return cells


def clean_anatomy(policy: PixelPolicy = DETECTOR_ONLY) -> list[tuple[str, float, int]]:
    """Each anatomy image without text through the scrubber (OCR off): fraction unchanged,
    lines found (learned regions when `policy` runs the learned stage)."""
    out = []
    for name in ANATOMY:
        sample = burn(anatomy(name), [])
        result = scrub(sample.ds, policy, None)
        found = result.learned_regions if policy.learned != "off" else result.text_lines
        if result.dataset is None:
            out.append((name, 0.0, found))
            continue
        before, after = decode(sample.ds).frames[0], decode(result.dataset).frames[0]
        out.append((name, float((before == after).mean()), found))
    return out


def _cell(cell: Score) -> str:
    unchanged = np.mean(cell.unchanged) if cell.unchanged else float("nan")
    return f"{100 * cell.removed / max(cell.total, 1):.0f} % / {100 * unchanged:.1f} %"


def _overall(label: str, cells: dict[tuple[int, float], Score]) -> str:
    total = Score(unchanged=[])
    for cell in cells.values():
        total.add(cell)
    return (
        f"{label}: recall {100 * total.removed / max(total.total, 1):.1f} % "
        f"({total.removed}/{total.total}), unchanged outside text "
        f"{100 * float(np.mean(total.unchanged or [0])):.2f} % (min "
        f"{100 * float(np.min(total.unchanged or [0])):.1f} %), quarantined "
        f"{total.quarantined}/{total.instances}."
    )


def _best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _baseline_find_text() -> Callable[[np.ndarray], object] | None:
    """`find_text` of another checkout (HEXCHANGE_DETECT_BASELINE=/path/to/textdetect.py),
    by default main's (`git show main:deidentify/pixels/textdetect.py`, copied to a temporary
    file at run time), timed in the same run as ours."""
    global baseline_label
    path = os.environ.get("HEXCHANGE_DETECT_BASELINE")
    baseline_label = path or "main's (git show main:deidentify/pixels/textdetect.py)"
    if not path:
        path = _main_detector()
        if path is None:
            return None
    spec = importlib.util.spec_from_file_location("baseline_textdetect", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module.find_text  # type: ignore[no-any-return]


def _main_detector() -> str | None:
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        ["git", "-C", str(root), "show", "main:deidentify/pixels/textdetect.py"],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        return None
    handle, name = tempfile.mkstemp(prefix="main_textdetect_", suffix=".py")
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        out.write(proc.stdout)
    atexit.register(os.unlink, name)
    return name


pairs: list[tuple[float, float]] = []
cpu_pairs: list[tuple[float, float]] = []  # process CPU time: less hit by the other jobs


def _cpu(fn: Callable[[], object], repeat: int) -> float:
    start = time.process_time()
    for _ in range(repeat):
        fn()
    return (time.process_time() - start) / repeat


baseline_label = ""


def speeds(ocr: TesseractBackend) -> dict[str, float]:
    rng = np.random.default_rng(3)
    ct = burn(anatomy("ct_head"), random_burns(rng, 512, 512, heights=(12,), contrasts=(0.6,)))
    decoded = decode(ct.ds)
    frame = decoded.frames[0]

    def detect() -> None:
        find_text(render_gray8(frame, decoded.photometric))

    clean = burn(anatomy("ct_skull"), [])
    cine = rgb_image(480, 640, texts=corner_texts(480, 640, 14), frames=10).ds
    cine_decoded = decode(cine)

    def screen_cine() -> None:
        for i in range(cine_decoded.count):
            find_text(render_gray8(cine_decoded.frames[i], cine_decoded.photometric))

    baseline = _baseline_find_text()
    if baseline is not None:
        gray = render_gray8(frame, decoded.photometric)
        for _ in range(3):  # alternate: other load on the machine hits both
            ours = 1000 * _best(lambda: find_text(gray), 30)
            theirs = 1000 * _best(lambda: baseline(gray), 30)
            pairs.append((ours, theirs))
        for _ in range(6):
            cpu_pairs.append((1000 * _cpu(lambda: find_text(gray), 25),
                              1000 * _cpu(lambda: baseline(gray), 25)))  # fmt: skip
    out = {}
    if netdetect.is_available():
        gray = render_gray8(frame, decoded.photometric)
        learned_in_process(gray)  # the session loads once per process
        learned_cpu, classical_cpu = [], []
        for _ in range(6):  # alternating, process CPU (one thread each)
            classical_cpu.append(1000 * _cpu(lambda: find_text(gray), 10))
            learned_cpu.append(1000 * _cpu(lambda: learned_in_process(gray), 3))
        out["learned_cpu_ms"] = statistics.median(learned_cpu)
        out["classical_cpu_ms"] = statistics.median(classical_cpu)
        out["scrub_text_learned_ms"] = 1000 * _best(lambda: scrub(ct.ds, LEARNED, None), 5)
    out |= {
        "detect_ms": 1000 * _best(detect, 60),
        "scrub_clean_ms": 1000 * _best(lambda: scrub(clean.ds, PixelPolicy.default(), ocr), 15),
        "scrub_text_no_ocr_ms": 1000 * _best(lambda: scrub(ct.ds, DETECTOR_ONLY, None), 15),
        "scrub_text_ocr_ms": 1000 * _best(lambda: scrub(ct.ds, PixelPolicy.default(), ocr), 3),
        "cine_fps": cine_decoded.count / _best(screen_cine, 5),
    }
    return out


def lines_for(quick: bool, ocr: TesseractBackend) -> list[str]:
    samples = corpus(quick)
    start = time.perf_counter()
    cells = table(samples, DETECTOR_ONLY, None)
    detector_s = time.perf_counter() - start
    learned_reason = netdetect.unavailable_reason()
    start = time.perf_counter()
    learned = table(samples, LEARNED, None) if learned_reason is None else {}
    learned_s = time.perf_counter() - start
    subset = [s for s in samples if s[0] in (12, 24) and s[1] in (0.6, 1.0)][: 12 if quick else 24]
    default_policy = replace(PixelPolicy.default(), rules=RuleSet())
    side: dict[str, Score] = {}
    classical_ocr = replace(default_policy, learned="off")
    for label, policy in (("OCR only (text=ocr, no detector)", OCR_ONLY),
                          ("detector + OCR (learned = off)", classical_ocr),
                          ("default (+ learned stage)", default_policy)):  # fmt: skip
        total = Score(unchanged=[])
        for cell in table(subset, policy, ocr).values():
            total.add(cell)
        side[label] = total
    sp = speeds(ocr)
    out = [
        f"Corpus: {len(samples)} images (6 anatomy x {len(HEIGHTS)} heights x "
        f"{len(CONTRASTS)} contrasts{'' if quick else ' x 2'}), 3 identifying texts each; "
        f"detector-only scrub (OCR off: every detected line blanked) took {detector_s:.1f} s "
        f"(classical detector alone, learned = off); with the learned stage (learned = auto) "
        f"{learned_s:.1f} s.",
        "",
        "Recall of identifying boxes (removed / boxes; quarantined instances count as not"
        " removed) and mean fraction of pixels outside text unchanged, by text height x contrast"
        " (classical detector alone; then with the learned stage: recall / unchanged):",
        "",
        "| height \\\\ contrast | " + " | ".join(f"{int(c * 100)} %" for c in CONTRASTS) + " |",
        "|---|" + "---|" * len(CONTRASTS),
    ]
    for height in HEIGHTS:
        row = []
        for contrast in CONTRASTS:
            row.append(_cell(cells[height, contrast]))
            if learned:
                row[-1] += f" → {_cell(learned[height, contrast])}"
        out.append(f"| {height} px | " + " | ".join(row) + " |")
    allcells = Score(unchanged=[])
    for cell in cells.values():
        allcells.add(cell)
    out += [
        "",
        "Overall (classical alone): recall "
        f"{100 * allcells.removed / max(allcells.total, 1):.1f} % "
        f"({allcells.removed}/{allcells.total}), unchanged outside text "
        f"{100 * float(np.mean(allcells.unchanged or [0])):.1f} % (min "
        f"{100 * float(np.min(allcells.unchanged or [0])):.1f} %), quarantined "
        f"{allcells.quarantined}/{allcells.instances}. Missed boxes: "
        f"{allcells.partly} partly blanked (some of their ink outside the blanked boxes), "
        f"{allcells.total - allcells.removed - allcells.partly} not found or quarantined.",
        "",
        _overall("With the learned stage (learned = auto, OCR off)", learned)
        if learned
        else f"Learned stage: not measured, unavailable ({learned_reason}).",
        "",
        "Images with the most pixels changed outside text (unchanged share, image, text "
        "height): " + ", ".join(f"{100 * u:.1f} % {w}" for u, w in allcells.worst) + ".",
        "",
        "Recall by font, rotation, image, style (same run):",
        "",
    ]
    for kind in ("font", "angle", "image", "inverted", "antialias"):
        cells_ = sorted((k[1], v) for k, v in allcells.by.items() if k[0] == kind)
        out.append(
            f"- {kind}: "
            + ", ".join(f"{name} {100 * r / max(t, 1):.0f} % ({r}/{t})" for name, (r, t) in cells_)
        )
    out += [
        "",
        "Clean anatomy (no text) through the detector-only scrub: fraction unchanged, lines found"
        " (classical alone; with the learned stage, which runs only where a line was found):",
        "",
        "| image | unchanged | lines | unchanged, learned = auto | learned regions |",
        "|---|---|---|---|---|",
    ]
    out += [
        f"| {n} | {100 * u:.2f} % | {k} | {100 * lu:.2f} % | {lk} |"
        for (n, u, k), (_, lu, lk) in zip(
            clean_anatomy(), clean_anatomy(LEARNED if learned else DETECTOR_ONLY), strict=True
        )
    ]
    out += [
        "",
        f"Side by side on {len(subset)} of these images (12 and 24 px, contrast 60-100 %), "
        "real tesseract:",
        "",
        "| policy | recall | unchanged outside text | quarantined |",
        "|---|---|---|---|",
    ]
    for label, total in side.items():
        out.append(
            f"| {label} | {100 * total.removed / max(total.total, 1):.1f} % "
            f"({total.removed}/{total.total}) | "
            f"{100 * float(np.mean(total.unchanged or [0])):.1f} % | "
            f"{total.quarantined}/{total.instances} |"
        )
    out += [
        "",
        "Speed (median; one process, OpenCV and tesseract on one thread):",
        "",
        f"- detector on a 512x512 CT slice (render to 8 bits + find_text): "
        f"{sp['detect_ms']:.1f} ms",
        f"- full default scrub of a 512x512 CT slice without text (decode, screen, nothing to "
        f"read): {sp['scrub_clean_ms']:.1f} ms",
        f"- full scrub of a CT slice with 3 texts, OCR off: {sp['scrub_text_no_ocr_ms']:.1f} ms;"
        f" default with tesseract reading the detected lines: {sp['scrub_text_ocr_ms']:.0f} ms"
        f" (OCR time per instance ~{sp['scrub_text_ocr_ms'] - sp['scrub_text_no_ocr_ms']:.0f}"
        " ms)",
        f"- detector on US cine frames (RGB 640x480): {sp['cine_fps']:.0f} frames/s",
    ]
    if "learned_cpu_ms" in sp:
        out += [
            f"- learned stage (netdetect.find_regions: resize to 736, DB network, post-processing)"
            f" on the 512x512 CT slice, process CPU, one thread, median of 6 alternating rounds:"
            f" {sp['learned_cpu_ms']:.0f} ms, beside the classical find_text's "
            f"{sp['classical_cpu_ms']:.1f} ms",
            f"- full scrub of the CT slice with 3 texts, OCR off, learned = auto: "
            f"{sp['scrub_text_learned_ms']:.0f} ms (learned = off: "
            f"{sp['scrub_text_no_ocr_ms']:.1f} ms)",
        ]
    if pairs:
        out.append(
            "- same run, alternating (find_text alone on the 8-bit slice, median of 30, 3 rounds):"
            f" this detector vs {baseline_label}: "
            + ", ".join(f"{a:.1f} vs {b:.1f} ms" for a, b in pairs)
            + f"; ratio {statistics.median(a / b for a, b in pairs):.2f}"
        )
    if cpu_pairs:
        out.append(
            "- same run, alternating, CPU time of the process (mean of 25 calls, 6 rounds): "
            + ", ".join(f"{a:.1f} vs {b:.1f} ms" for a, b in cpu_pairs)
            + f"; ratio {statistics.median(a / b for a, b in cpu_pairs):.2f}"
        )
    out.append("")
    return out
