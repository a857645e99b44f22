"""Folders for the files the app hands out (API masks, the page's exports), kept bounded.

Each call gets a fresh folder of its own, so a file keeps the name the client sees
(``mask.png``, ``truck_annotations.zip``), but the folders live side by side in one parent
owned by the app and the oldest are removed as new ones are made. Gradio copies every file an
event returns into its own cache before the client downloads it (that cache is bounded by
``gr.Blocks(delete_cache=...)``, see ``ui/layout.py``), so the app's copy is only needed while
the event finishes: :data:`KEEP` folders is far more than can be in flight at once.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

logger = logging.getLogger(__name__)

#: Folders kept in one parent, the new one included: well above the events that can be
#: writing at once (Gradio runs at most a handful per lane), so a file is never removed before
#: Gradio has copied it.
KEEP = 32
#: Folders older than this many seconds are removed at the next call, however few there are.
MAX_AGE_S = 600.0


def fresh_folder(parent: Path, keep: int = KEEP, max_age_s: float = MAX_AGE_S) -> Path:
    """A new, empty, uniquely named folder in ``parent`` (created if needed).

    First removes the oldest folders of ``parent`` so that at most ``keep`` remain with the
    new one, and every folder older than ``max_age_s`` seconds.
    """
    if keep < 1:
        raise ValueError(f"keep must be at least 1, not {keep}")
    parent.mkdir(parents=True, exist_ok=True)
    prune(parent, keep - 1, max_age_s)
    return Path(tempfile.mkdtemp(dir=parent))


def prune(parent: Path, keep: int, max_age_s: float) -> None:
    """Remove all but the ``keep`` newest entries of ``parent``, and those older than
    ``max_age_s`` seconds (by modification time)."""
    entries = []
    for entry in os.scandir(parent):
        try:
            entries.append((entry.stat(follow_symlinks=False).st_mtime, entry.path))
        except FileNotFoundError:  # removed by a concurrent call
            continue
    entries.sort(reverse=True)
    oldest_kept = time.time() - max_age_s
    for index, (mtime, path) in enumerate(entries):
        if index >= keep or mtime < oldest_kept:
            _remove(Path(path))


def _remove(path: Path) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:  # removed by a concurrent call
        pass
    except OSError as exc:
        logger.warning("could not remove old output %s: %s", path.name, exc)


@functools.cache
def process_folder(prefix: str) -> Path:
    """A temp folder for this process, made on first use and removed when it exits."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder
