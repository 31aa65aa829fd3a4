"""Making a batch of received files durable together: each association's thread flushes its
own file's contents (`sync_contents`, concurrently: the filesystem merges concurrent flushes),
then the spool's group-commit leader gives every file of the batch its final name and flushes
each folder once (`name_durably`), before the caller records the batch's rows in one commit.

The order is the one a single instance has: a file's contents are on disk before it gets its
final name, and its name is on disk before its row (the row is what lets the spool answer
success and the pipeline see the instance).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from node_agent.files import fsync_dir


@dataclass(frozen=True)
class Staged:
    """A received file under a temporary name, in the folder of its final name."""

    staged: Path
    target: Path


def sync_contents(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def name_durably(batch: Sequence[Staged]) -> None:
    """Rename each staged file (its contents already durable) to its target, then flush each
    folder once. Raises on the first failure: then no file of the batch may be reported
    durable (every caller's C-STORE fails and the sender sends it again)."""
    for item in batch:
        os.replace(item.staged, item.target)
    for folder in sorted({item.target.parent for item in batch}):
        fsync_dir(folder)
