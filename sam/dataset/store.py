"""Annotations of an image folder in an embedded SQLite database.

Every change is committed at once in WAL mode, so a crash or ``kill -9`` loses at most the
action in flight. Masks are stored as COCO compressed RLE (pycocotools), with their box, area
and the prompts that produced them. The schema carries a version (``PRAGMA user_version``) and
is migrated forward when an older database is opened.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ColorError, ConflictError, StoreError
from ..image_io import list_images
from ..masks import mask_to_rle, rle_bbox_area, rle_to_mask
from .annotations import Label
from .colors import LABEL_PALETTE, check_color, parse_color

SCHEMA_VERSION = 3
STATUSES = ("not_started", "in_progress", "done")
DEFAULT_DB_NAME = ".sam-annotator/annotations.sqlite"

_MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE images (
        id INTEGER PRIMARY KEY,
        path TEXT NOT NULL UNIQUE,
        width INTEGER,
        height INTEGER,
        status TEXT NOT NULL DEFAULT 'not_started'
            CHECK (status IN ('not_started', 'in_progress', 'done')),
        updated_at REAL NOT NULL
    );
    CREATE TABLE labels (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        color TEXT NOT NULL
    );
    CREATE TABLE objects (
        id INTEGER PRIMARY KEY,
        image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        label_id INTEGER REFERENCES labels(id) ON DELETE SET NULL,
        rle TEXT NOT NULL,
        bbox TEXT NOT NULL,
        area INTEGER NOT NULL,
        score REAL,
        prompts TEXT,
        source TEXT NOT NULL DEFAULT 'click',
        hidden INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE INDEX objects_by_image ON objects(image_id);
    CREATE TABLE project (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    """,
    # v2: an object may override its label's colour.
    2: "ALTER TABLE objects ADD COLUMN color TEXT;",
    # v3: proposals written by batch auto-labelling wait for review (reviewed = 0); which
    # images a run has done (found something or not), so a rerun does only the rest.
    3: """
    ALTER TABLE objects ADD COLUMN reviewed INTEGER NOT NULL DEFAULT 1;
    CREATE TABLE autolabelled (
        image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        source TEXT NOT NULL,
        done_at REAL NOT NULL,
        PRIMARY KEY (image_id, source)
    );
    """,
}

# Default of update_object's optional fields: leave the stored value as it is.
KEEP: Any = object()

logger = logging.getLogger(__name__)
# The highest label id ever handed out (project table): ids are never reused, so a label
# deleted and brought back by a redo gets its own id again, and exports keep their meaning.
_LABEL_HIGH_WATER = "label_high_water"


@dataclass(frozen=True)
class ImageRecord:
    id: int
    path: str  # relative to the project folder, with forward slashes
    width: int | None
    height: int | None
    status: str
    num_objects: int = 0


@dataclass(frozen=True)
class ObjectRecord:
    """One annotated object. ``rle`` is COCO compressed RLE; ``bbox`` is COCO ``[x, y, w, h]``."""

    id: int
    image_id: int
    label_id: int | None
    rle: dict[str, Any]
    bbox: list[float]
    area: int
    score: float | None = None
    prompts: dict[str, Any] | None = None
    source: str = "click"
    hidden: bool = False
    color: str | None = None  # None: the label's colour
    version: float = 0.0  # updated_at: changes with every write to the row
    reviewed: bool = True  # False: a proposal of ``python -m sam.autolabel`` awaiting review

    def mask(self) -> np.ndarray:
        """The mask as ``(H, W) bool``."""
        return rle_to_mask(self.rle)


class AnnotationStore:
    """Images, labels and objects of one project, persisted in SQLite.

    Thread-safe: one connection guarded by a lock (Gradio runs handlers in threads).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._conn.row_factory = sqlite3.Row
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._lock = threading.RLock()
            self._migrate()
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(
                f"Cannot open the annotation database {self.path}: {exc}. Check that the folder "
                "is writable and the file is not corrupt (pass --db to use another file)."
            ) from exc

    @classmethod
    def for_folder(cls, images_dir: str | Path, db: str | Path | None = None) -> AnnotationStore:
        """The store of an image folder (default ``DIR/.sam-annotator/annotations.sqlite``),
        with every image file of the folder registered."""
        folder = Path(images_dir).resolve()
        if not folder.is_dir():
            raise StoreError(f"{folder} is not a folder of images.")
        store = cls(Path(db) if db is not None else folder / DEFAULT_DB_NAME)
        store.set_setting("images_dir", str(folder))
        store.add_images(list_images(folder))
        return store

    def setting(self, key: str) -> str | None:
        with self._lock:
            row = self._conn.execute("SELECT value FROM project WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_setting(self, key: str, value: str) -> None:
        with self._tx() as conn:
            conn.execute("INSERT OR REPLACE INTO project (key, value) VALUES (?, ?)", (key, value))

    @property
    def images_dir(self) -> Path | None:
        """The image folder this database annotates, when it was opened with ``for_folder``."""
        value = self.setting("images_dir")
        return None if value is None else Path(value)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> AnnotationStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _migrate(self) -> None:
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} was written by a newer version of this app (schema {version} > "
                f"{SCHEMA_VERSION}); upgrade the app to open it."
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            with self._tx() as conn:
                for statement in _MIGRATIONS[target].split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {target}")

    @property
    def schema_version(self) -> int:
        with self._lock:
            return self._conn.execute("PRAGMA user_version").fetchone()[0]

    # -- images -----------------------------------------------------------------------------------

    def add_images(
        self, paths: Iterable[str], sizes: dict[str, tuple[int, int]] | None = None
    ) -> None:
        """Register images by relative path (already known paths are left as they are)."""
        now = time.time()
        sizes = sizes or {}
        with self._tx() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO images (path, width, height, updated_at) VALUES (?,?,?,?)",
                [(p, *sizes.get(p, (None, None)), now) for p in paths],
            )

    def images(self, status: str | None = None) -> list[ImageRecord]:
        query = (
            "SELECT i.*, (SELECT COUNT(*) FROM objects o WHERE o.image_id = i.id"
            " AND o.reviewed = 1) AS n "
            "FROM images i"
        )
        args: tuple = ()
        if status is not None:
            _check_status(status)
            query += " WHERE status = ?"
            args = (status,)
        with self._lock:
            rows = self._conn.execute(query + " ORDER BY path", args).fetchall()
        return [
            ImageRecord(r["id"], r["path"], r["width"], r["height"], r["status"], r["n"])
            for r in rows
        ]

    def image(self, image_id: int) -> ImageRecord:
        matches = [r for r in self.images() if r.id == image_id]
        if not matches:
            raise StoreError(f"No image with id {image_id} in {self.path}.")
        return matches[0]

    def image_id(self, path: str) -> int:
        with self._lock:
            row = self._conn.execute("SELECT id FROM images WHERE path = ?", (path,)).fetchone()
        if row is None:
            raise StoreError(f"{path!r} is not an image of this project.")
        return int(row[0])

    def set_image_size(self, image_id: int, width: int, height: int) -> None:
        with self._tx() as conn:
            conn.execute(
                "UPDATE images SET width = ?, height = ? WHERE id = ?", (width, height, image_id)
            )

    def set_status(self, image_id: int, status: str) -> None:
        _check_status(status)
        with self._tx() as conn:
            conn.execute(
                "UPDATE images SET status = ?, updated_at = ? WHERE id = ?",
                (status, time.time(), image_id),
            )

    def progress(self) -> tuple[int, int]:
        """(images done, images in total)."""
        with self._lock:
            done, total = self._conn.execute(
                "SELECT SUM(status = 'done'), COUNT(*) FROM images"
            ).fetchone()
        return int(done or 0), int(total)

    # -- labels -----------------------------------------------------------------------------------

    def labels(self) -> list[Label]:
        with self._lock:
            rows = self._conn.execute("SELECT * FROM labels ORDER BY id").fetchall()
        return [_label(r) for r in rows]

    def ensure_label(self, name: str, color: str | None = None) -> Label:
        """The label called ``name``, created (with a palette colour) if new.

        New labels get ids never handed out before in this project, even to deleted labels.
        """
        name = name.strip()
        if not name:
            raise StoreError("A label needs a name.")
        color = check_color(color) if color else None
        with self._tx() as conn:
            row = conn.execute("SELECT * FROM labels WHERE name = ?", (name,)).fetchone()
            if row is not None:
                return _label(row)
            count = conn.execute("SELECT COUNT(*) FROM labels").fetchone()[0]
            return self._insert_label(
                conn, None, name, color or LABEL_PALETTE[count % len(LABEL_PALETTE)]
            )

    def restore_label(self, label_id: int, name: str, color: str) -> Label:
        """Bring back a label that was deleted (an undone removal, another tab's deletion)
        under its old id; the label called ``name`` if one exists now."""
        color = check_color(color)
        with self._tx() as conn:
            row = conn.execute("SELECT * FROM labels WHERE name = ?", (name,)).fetchone()
            if row is not None:
                return _label(row)
            taken = conn.execute("SELECT 1 FROM labels WHERE id = ?", (label_id,)).fetchone()
            return self._insert_label(conn, None if taken else label_id, name, color)

    @staticmethod
    def _insert_label(
        conn: sqlite3.Connection, label_id: int | None, name: str, color: str
    ) -> Label:
        row = conn.execute(
            "SELECT MAX(COALESCE((SELECT MAX(id) FROM labels), 0),"
            " COALESCE((SELECT CAST(value AS INTEGER) FROM project WHERE key = ?), 0))",
            (_LABEL_HIGH_WATER,),
        ).fetchone()
        high = int(row[0])
        if label_id is None or label_id <= 0:
            label_id = high + 1
        conn.execute(
            "INSERT INTO labels (id, name, color) VALUES (?, ?, ?)", (label_id, name, color)
        )
        conn.execute(
            "INSERT OR REPLACE INTO project (key, value) VALUES (?, ?)",
            (_LABEL_HIGH_WATER, str(max(high, label_id))),
        )
        return Label(label_id, name, color)

    def update_label(
        self, label_id: int, name: str | None = None, color: str | None = None
    ) -> None:
        color = None if color is None else check_color(color)
        with self._tx() as conn:
            if name is not None:
                try:
                    conn.execute(
                        "UPDATE labels SET name = ? WHERE id = ?", (name.strip(), label_id)
                    )
                except sqlite3.IntegrityError as exc:
                    raise StoreError(f"There is already a label called {name!r}.") from exc
            if color is not None:
                conn.execute("UPDATE labels SET color = ? WHERE id = ?", (color, label_id))

    def label_usage(self, label_id: int) -> int:
        """How many objects of the whole project carry the label."""
        with self._lock:
            row = self._conn.execute(
                "SELECT COUNT(*) FROM objects WHERE label_id = ?", (label_id,)
            ).fetchone()
        return int(row[0])

    def delete_label(self, label_id: int) -> None:
        """Remove a label; refused while objects anywhere in the project use it."""
        used = self.label_usage(label_id)
        if used:
            raise StoreError(
                f"The label is used by {used} object(s) in this project: relabel or delete them "
                "first."
            )
        with self._tx() as conn:
            conn.execute("DELETE FROM labels WHERE id = ?", (label_id,))

    def load_labels_file(self, path: str | Path) -> list[Label]:
        """Create labels from a text file, one name per line (``name`` or ``name,#rrggbb``).

        The whole file is checked first: a colour that is not ``#rrggbb`` (or ``#rgb``) is a
        :class:`StoreError` naming its line, and no label of the file is created.
        """
        entries = []
        for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name, _, color = line.partition(",")
            try:
                entries.append((name, check_color(color) if color.strip() else None))
            except ColorError as exc:
                raise StoreError(f"{path}, line {number}: {exc}") from exc
        return [self.ensure_label(name, color) for name, color in entries]

    # -- objects ----------------------------------------------------------------------------------

    def add_object(
        self,
        image_id: int,
        mask: np.ndarray,
        label_id: int | None = None,
        score: float | None = None,
        prompts: dict[str, Any] | None = None,
        source: str = "click",
        color: str | None = None,
    ) -> int:
        """Store a mask ``(H, W) bool`` as an object of the image; returns its id."""
        color = None if color is None else check_color(color)
        rle = mask_to_rle(mask)
        bbox, area = rle_bbox_area(rle)
        now = time.time()
        with self._tx() as conn:
            cur = conn.execute(
                "INSERT INTO objects (image_id, label_id, rle, bbox, area, score, prompts, source,"
                " color, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    image_id, label_id, json.dumps(rle), json.dumps(bbox), area, score,
                    None if prompts is None else json.dumps(prompts), source, color, now, now,
                ),
            )  # fmt: skip
            conn.execute(
                "UPDATE images SET status = 'in_progress', updated_at = ? "
                "WHERE id = ? AND status = 'not_started'",
                (now, image_id),
            )
            return int(cur.lastrowid)

    def add_proposals(
        self,
        image_id: int,
        source: str,
        proposals: Iterable[tuple[dict[str, Any], float | None, dict[str, Any] | None, int | None]],
    ) -> list[int]:
        """Store an image's auto-labelling results as objects awaiting review, and mark the
        image done for ``source`` (even when nothing was found), all in one transaction: a
        crash leaves an image with all of them or none. Each proposal is ``(COCO RLE, score,
        prompts, label id)``; ``source`` is "everything" or "text". The image's status is
        left as it is: nothing was annotated yet."""
        now = time.time()
        ids = []
        with self._tx() as conn:
            for rle, score, prompts, label_id in proposals:
                bbox, area = rle_bbox_area(rle)
                cur = conn.execute(
                    "INSERT INTO objects (image_id, label_id, rle, bbox, area, score, prompts,"
                    " source, reviewed, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,0,?,?)",
                    (
                        image_id, label_id, json.dumps(rle), json.dumps(bbox), area, score,
                        None if prompts is None else json.dumps(prompts), source, now, now,
                    ),
                )  # fmt: skip
                ids.append(int(cur.lastrowid))
            conn.execute(
                "INSERT OR REPLACE INTO autolabelled (image_id, source, done_at) VALUES (?,?,?)",
                (image_id, source, now),
            )
        return ids

    def autolabelled(self, source: str) -> set[int]:
        """Ids of the images an auto-labelling run of ``source`` has done."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT image_id FROM autolabelled WHERE source = ?", (source,)
            ).fetchall()
        return {int(r[0]) for r in rows}

    def update_object(
        self,
        object_id: int,
        mask: np.ndarray | None = None,
        label_id: int | None = None,
        hidden: bool | None = None,
        score: float | None = None,
        prompts: dict[str, Any] | None = KEEP,
        color: str | None = KEEP,
        if_version: float | None = None,
        clear_label: bool = False,
    ) -> float:
        """Change an object; arguments left out keep their stored value (``color=None`` clears
        a colour override, ``prompts=None`` clears the prompts, ``clear_label`` unlabels it).

        With ``if_version`` the write happens only if the row is still at that version
        (:attr:`ObjectRecord.version`), else :class:`ConflictError`. Returns the new version.
        """
        sets, args = [], []
        if mask is not None:
            rle = mask_to_rle(mask)
            bbox, area = rle_bbox_area(rle)
            sets += ["rle = ?", "bbox = ?", "area = ?"]
            args += [json.dumps(rle), json.dumps(bbox), area]
        for column, value in (("label_id", label_id), ("score", score)):
            if value is not None:
                sets.append(f"{column} = ?")
                args.append(value)
        if clear_label:
            sets.append("label_id = NULL")
        if hidden is not None:
            sets.append("hidden = ?")
            args.append(int(hidden))
        if prompts is not KEEP:
            sets.append("prompts = ?")
            args.append(None if prompts is None else json.dumps(prompts))
        if color is not KEEP:
            sets.append("color = ?")
            args.append(None if color is None else check_color(color))
        with self._tx() as conn:
            self._check_version(conn, object_id, if_version, missing_ok=False)
            # The version must change even when two writes fall in the same clock tick.
            sets.append("updated_at = MAX(?, updated_at + 0.000001)")
            args.append(time.time())
            conn.execute(f"UPDATE objects SET {', '.join(sets)} WHERE id = ?", (*args, object_id))
            row = conn.execute("SELECT updated_at FROM objects WHERE id = ?", (object_id,))
            return float(row.fetchone()[0])

    def delete_object(self, object_id: int, if_version: float | None = None) -> None:
        """Delete an object (gone already: nothing to do). With ``if_version``, a row changed
        since that version is kept and :class:`ConflictError` raised."""
        with self._tx() as conn:
            self._check_version(conn, object_id, if_version, missing_ok=True)
            conn.execute("DELETE FROM objects WHERE id = ?", (object_id,))

    @staticmethod
    def _check_version(
        conn: sqlite3.Connection, object_id: int, version: float | None, missing_ok: bool
    ) -> None:
        row = conn.execute("SELECT updated_at FROM objects WHERE id = ?", (object_id,)).fetchone()
        if row is None:
            if missing_ok:
                return
            if version is None:
                raise StoreError(f"No object with id {object_id}.")
            raise ConflictError(f"Object {object_id} was deleted in another tab or process.")
        if version is not None and float(row[0]) != version:
            raise ConflictError(f"Object {object_id} was changed in another tab or process.")

    def object_versions(self, image_id: int) -> dict[int, float]:
        """``{object id: version}`` of an image's objects: a cheap way to see what changed."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, updated_at FROM objects WHERE image_id = ? AND reviewed = 1",
                (image_id,),
            ).fetchall()
        return {int(r[0]): float(r[1]) for r in rows}

    def objects(self, image_id: int | None = None, reviewed: bool = True) -> list[ObjectRecord]:
        """The objects of an image (of the project when ``image_id`` is None): annotations, or
        with ``reviewed=False`` the auto-labelling proposals that await review (never
        exported, counted or synced as annotations)."""
        query, args = "SELECT * FROM objects WHERE reviewed = ?", (int(reviewed),)
        if image_id is not None:
            query, args = query + " AND image_id = ?", (*args, image_id)
        with self._lock:
            rows = self._conn.execute(query + " ORDER BY id", args).fetchall()
        return [
            ObjectRecord(
                id=r["id"],
                image_id=r["image_id"],
                label_id=r["label_id"],
                rle=json.loads(r["rle"]),
                bbox=json.loads(r["bbox"]),
                area=r["area"],
                score=r["score"],
                prompts=None if r["prompts"] is None else json.loads(r["prompts"]),
                source=r["source"],
                hidden=bool(r["hidden"]),
                color=_stored_color(r["color"], None, f"object {r['id']}"),
                version=float(r["updated_at"]),
                reviewed=bool(r["reviewed"]),
            )
            for r in rows
        ]


def _label(row: sqlite3.Row) -> Label:
    """A label row; a colour that is not ``#rrggbb`` reads as a palette colour."""
    fallback = LABEL_PALETTE[(row["id"] - 1) % len(LABEL_PALETTE)]
    color = _stored_color(row["color"], fallback, f"label {row['id']}") or fallback
    return Label(row["id"], row["name"], color)


def _stored_color(value: object, fallback: str | None, what: str) -> str | None:
    """A colour read from the database as ``#rrggbb``, else ``fallback``: another program may
    have written anything there, and colours go into the page's HTML."""
    if value is None:
        return None
    color = parse_color(value)
    if color is None:
        logger.warning("Ignoring the stored colour of %s: %.40r is not #rrggbb", what, value)
        return fallback
    return color


def _check_status(status: str) -> None:
    if status not in STATUSES:
        raise StoreError(f"Unknown status {status!r}; use one of {', '.join(STATUSES)}.")
