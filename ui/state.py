"""Per-session annotation state: the image, prompts, candidates, labels, objects and history.

Everything undoable lives in one immutable :class:`Doc`; an edit builds a new ``Doc`` and the
previous one goes on the undo stack. Docs share their numpy arrays (masks, logits, the image),
which are made read-only, so a history of a hundred steps costs little more than one step.

A :class:`Session` is what a browser tab keeps in its ``gr.State``; nothing here is global, so
two tabs never see each other's work.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields, is_dataclass, replace

import numpy as np

from sam.dataset.annotations import Label
from sam.dataset.colors import LABEL_PALETTE
from sam.dataset.export import UNLABELLED
from sam.errors import StoreError

from .errors import LabelError
from .redact import without_paths

DEFAULT_LABELS: tuple[str, ...] = ("object", "background")
HISTORY_LIMIT = 100
#: Bytes of masks and logits a tab keeps in the undo histories of the project images it left
#: (a step's three candidates' logits alone are 0.8 MB): beyond it the histories of the images
#: left longest ago go first; one history alone over it loses its oldest steps.
SHELF_BUDGET_BYTES = 64 * 2**20


def frozen(array: np.ndarray) -> np.ndarray:
    """Mark ``array`` read-only: docs share arrays, so an in-place edit would rewrite history."""
    array.flags.writeable = False
    return array


@dataclass(frozen=True)
class Mask:
    """A binary mask stored as its bounding-box crop, bit-packed: exact, and small.

    History keeps every step's candidates, so a full-size bool mask per candidate per step
    would cost hundreds of MB on a large photo; packed crops cost a fraction of that.
    """

    shape: tuple[int, int]  # (H, W) of the full image
    top: int
    left: int
    crop_shape: tuple[int, int]  # (h, w); (0, 0) for an empty mask
    bits: np.ndarray  # np.packbits of the (h, w) crop, read-only
    area: int

    @classmethod
    def from_array(cls, mask: np.ndarray) -> Mask:
        mask = np.asarray(mask, dtype=bool)
        shape = (int(mask.shape[0]), int(mask.shape[1]))
        rows = np.flatnonzero(mask.any(axis=1))
        if rows.size == 0:
            return cls(shape, 0, 0, (0, 0), frozen(np.zeros(0, np.uint8)), 0)
        cols = np.flatnonzero(mask.any(axis=0))
        top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        crop = mask[top:bottom, left:right]
        return cls(
            shape,
            int(top),
            int(left),
            (int(bottom - top), int(right - left)),
            frozen(np.packbits(crop, axis=None)),
            int(np.count_nonzero(crop)),
        )

    @property
    def crop(self) -> np.ndarray:
        """The ``(h, w)`` bool crop (unpacked on each access; callers keep it if needed)."""
        h, w = self.crop_shape
        return np.unpackbits(self.bits, count=h * w).reshape(h, w).astype(bool)

    def to_array(self) -> np.ndarray:
        full = np.zeros(self.shape, dtype=bool)
        h, w = self.crop_shape
        full[self.top : self.top + h, self.left : self.left + w] = self.crop
        return full

    @property
    def bbox(self) -> tuple[int, int, int, int] | None:
        """``(x0, y0, x1, y1)`` with exclusive ends, or None when empty."""
        h, w = self.crop_shape
        if h == 0:
            return None
        return (self.left, self.top, self.left + w, self.top + h)


@dataclass(frozen=True)
class Prompt:
    """The clicks and box of the mask being drawn; coordinates in original image pixels."""

    points: tuple[tuple[int, int, int], ...] = ()  # (x, y, label) with label 1 = fg, 0 = bg
    box: tuple[int, int, int, int] | None = None

    @property
    def empty(self) -> bool:
        return not self.points and self.box is None

    def with_point(self, x: int, y: int, label: int) -> Prompt:
        return replace(self, points=(*self.points, (int(x), int(y), int(label))))

    def with_box(self, box: tuple[int, int, int, int]) -> Prompt:
        return replace(self, box=tuple(int(v) for v in box))  # type: ignore[arg-type]

    def wants_candidates(self) -> bool:
        """One click is ambiguous (part, object, group): ask SAM for three masks."""
        return len(self.points) == 1 and self.box is None


@dataclass(frozen=True)
class Candidates:
    """What the engine returned for the current prompt, best first."""

    masks: tuple[Mask, ...]
    scores: tuple[float, ...]
    # (K, 256, 256) float32, read-only; None for a mask with no decoder logits (an imported or
    # reloaded object being re-edited): the engine lays it out as a prompt when a click comes.
    logits: np.ndarray | None
    selected: int = 0

    @property
    def mask(self) -> Mask:
        return self.masks[self.selected]

    @property
    def score(self) -> float:
        return self.scores[self.selected]

    def selected_logits(self) -> np.ndarray | None:
        """The chosen candidate's low-res logits, shaped ``(1, 256, 256)`` for ``mask_input``."""
        return None if self.logits is None else self.logits[self.selected : self.selected + 1]


@dataclass(frozen=True)
class AnnotatedObject:
    id: int
    # The label's stable id (``Label.id``), never its name or place in the list: a rename
    # (here or in another tab) leaves the object on its label. UNLABELLED_ID: no label.
    label_id: int
    mask: Mask
    score: float
    prompt: Prompt = Prompt()
    logits: np.ndarray | None = None  # (1, 256, 256): lets a re-edit refine where it left off
    color: str | None = None  # None: the label's colour
    hidden: bool = False
    source: str = "click"  # "click" or "import": where the mask came from


@dataclass(frozen=True)
class ImageRef:
    key: str  # sam.cache.array_digest of the pixels: the engine's cache key too
    array: np.ndarray  # (H, W, 3) uint8 RGB, read-only
    name: str
    display_path: str  # downscaled JPEG the browser shows

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)``."""
        return (int(self.array.shape[0]), int(self.array.shape[1]))


@dataclass(frozen=True)
class Proposal:
    """A mask offered by Segment everything or Find objects, waiting to be accepted.

    ``score`` ranks proposals ("accept all above"): the predicted IoU for segment everything,
    the detector's confidence for text prompts. ``mask_score`` (predicted IoU) becomes the
    object's score. ``prompt`` is what made the mask (a grid point or a box), kept so an
    accepted object can be re-edited with clicks like any other.
    """

    mask: Mask
    score: float
    mask_score: float
    color: str
    prompt: Prompt = Prompt()
    phrase: str | None = None  # text prompts: the phrase that found it
    accepted: bool = False


@dataclass(frozen=True)
class Proposals:
    """The proposals on show; while there are any, a click on the image toggles one."""

    items: tuple[Proposal, ...]
    source: str  # "everything" or "text"
    query: str = ""  # the text prompt

    @property
    def accepted(self) -> tuple[Proposal, ...]:
        return tuple(p for p in self.items if p.accepted)


def default_labels() -> tuple[Label, ...]:
    """The labels of a new image or project, with ids 1, 2, ..."""
    return tuple(
        Label(i + 1, n, LABEL_PALETTE[i % len(LABEL_PALETTE)]) for i, n in enumerate(DEFAULT_LABELS)
    )


def next_color(labels: tuple[Label, ...]) -> str:
    """A palette colour no label uses yet (cycling when all are taken)."""
    used = {lab.color for lab in labels}
    free = [c for c in LABEL_PALETTE if c not in used]
    return free[0] if free else LABEL_PALETTE[len(labels) % len(LABEL_PALETTE)]


@dataclass(frozen=True)
class Doc:
    """One undoable snapshot of the work on an image."""

    image: ImageRef | None = None
    labels: tuple[Label, ...] = field(default_factory=default_labels)
    objects: tuple[AnnotatedObject, ...] = ()
    prompt: Prompt = Prompt()
    candidates: Candidates | None = None
    editing: int | None = None  # id of the object being re-edited
    next_id: int = 1
    proposals: Proposals | None = None  # segment everything / text results under review

    def label(self, name: str) -> Label | None:
        """The label called ``name`` (what a user types or picks), if any."""
        return next((lab for lab in self.labels if lab.name == name), None)

    def label_by_id(self, label_id: int) -> Label | None:
        return next((lab for lab in self.labels if lab.id == label_id), None)

    def label_name(self, obj: AnnotatedObject) -> str:
        """The name of ``obj``'s label as it is now (``UNLABELLED`` for none)."""
        lab = self.label_by_id(obj.label_id)
        return lab.name if lab else UNLABELLED

    def object(self, obj_id: int) -> AnnotatedObject | None:
        return next((o for o in self.objects if o.id == obj_id), None)

    def color_of(self, obj: AnnotatedObject) -> str:
        if obj.color:
            return obj.color
        lab = self.label_by_id(obj.label_id)
        return lab.color if lab else LABEL_PALETTE[0]

    def next_color(self) -> str:
        return next_color(self.labels)


@dataclass
class View:
    """Display settings: per tab, not undoable."""

    opacity: float = 0.5
    only_current: bool = False
    negative_mode: bool = False


# Hands out a project-wide label: (name, colour) -> the store's label of that name, created
# with that colour when new.
LabelAllocator = Callable[[str, str], Label]


@dataclass
class StoredObject:
    """A session object as the store holds it: its row, the object as last written or read,
    and the row's version (``updated_at``) then; a different version means another tab or
    process changed the row since."""

    row: int
    obj: AnnotatedObject
    version: float


@dataclass
class ProjectLink:
    """The project image a session shows, and what of it the annotation store holds.

    ``stored`` maps a session object id to its :class:`StoredObject`; docs are immutable, so
    "changed since written" is an identity check. ``labels`` is the project's label list as
    last written or read. Syncing diffs the current doc against both (which also makes undo
    and redo reach the store) and the store against both (which brings in what other tabs
    wrote). ``allocate`` creates labels in the store, so their ids are the project's.
    """

    image_id: int
    path: str
    stored: dict[int, StoredObject] = field(default_factory=dict)
    labels: tuple[Label, ...] = ()
    allocate: LabelAllocator | None = None
    # Rows of stored auto-labelling proposals (python -m sam.autolabel) on show; deleted from
    # the store once they are accepted (then they are objects) or discarded.
    review_rows: tuple[int, ...] = ()


def _array_bytes(value: object, seen: set[int]) -> int:
    """Bytes of the numpy arrays ``value`` holds (dataclass fields, tuples, lists), each
    array counted once across calls sharing ``seen``: docs of one history share theirs."""
    if isinstance(value, np.ndarray):
        if id(value) in seen:
            return 0
        seen.add(id(value))
        return value.nbytes
    if isinstance(value, (tuple, list)):
        return sum(_array_bytes(v, seen) for v in value)
    if is_dataclass(value) and not isinstance(value, type):
        return sum(_array_bytes(getattr(value, f.name), seen) for f in fields(value))
    return 0


@dataclass
class ShelvedHistory:
    """A project image's work as the tab left it: its docs without the image (reloaded from
    the folder on return, so a shelved history holds masks and logits only) and the link."""

    key: str  # the image's pixels' digest: the history only returns to the same pixels
    doc: Doc
    undo_stack: list[Doc]
    redo_stack: list[Doc]
    link: ProjectLink

    def nbytes(self) -> int:
        seen: set[int] = set()
        return sum(_array_bytes(d, seen) for d in (self.doc, *self.undo_stack, *self.redo_stack))


@dataclass
class HistoryShelf:
    """The undo histories of the project images a tab left, by image id, most recent last;
    bounded by ``budget_bytes``."""

    budget_bytes: int = SHELF_BUDGET_BYTES
    entries: dict[int, ShelvedHistory] = field(default_factory=dict)

    def put(self, image_id: int, entry: ShelvedHistory) -> None:
        """Keep ``entry`` (its oldest undo steps dropped while it alone is over the budget;
        not kept when still over), then drop the histories left longest ago until all fit."""
        self.entries.pop(image_id, None)
        size = entry.nbytes()
        while size > self.budget_bytes and entry.undo_stack:
            del entry.undo_stack[0]
            size = entry.nbytes()
        if size > self.budget_bytes:
            return
        sizes = {i: e.nbytes() for i, e in self.entries.items()}
        while sizes and sum(sizes.values()) + size > self.budget_bytes:
            oldest = next(iter(self.entries))
            del self.entries[oldest], sizes[oldest]
        self.entries[image_id] = entry

    def take(self, image_id: int) -> ShelvedHistory | None:
        return self.entries.pop(image_id, None)


@dataclass
class Session:
    """Everything one browser tab owns; lives in ``gr.State``."""

    doc: Doc = field(default_factory=Doc)
    undo_stack: list[Doc] = field(default_factory=list)
    redo_stack: list[Doc] = field(default_factory=list)
    view: View = field(default_factory=View)
    active_label_id: int = 1  # the label new objects get: default_labels()' first
    selected_object: int | None = None
    model_source: str | None = None  # None: the app's default model
    message: str = ""  # last notice or error, shown under the image
    message_is_error: bool = False
    link: ProjectLink | None = None  # set while a project image is open
    gallery_filter: str = "all"  # project gallery: "all" or an image status
    settings_family: str = ""  # whose Segment everything defaults the page shows; "": SAM's
    shelf: HistoryShelf = field(default_factory=HistoryShelf)  # histories of images left

    @property
    def active_label(self) -> str:
        """The name of the label new objects get ("" when the image has no labels)."""
        lab = self.doc.label_by_id(self.active_label_id)
        return lab.name if lab else ""

    @active_label.setter
    def active_label(self, name: str) -> None:
        lab = self.doc.label(name)
        if lab is None:
            raise LabelError(f"There is no label “{name}”.")
        self.active_label_id = lab.id

    def with_label(
        self, labels: tuple[Label, ...], name: str, color: str | None = None
    ) -> tuple[tuple[Label, ...], Label]:
        """``labels`` with one called ``name``, added when missing, and that label: in a
        project the store hands out its id (and returns the project's label if another tab
        just made it), else the next free id; ids already given out are never renumbered."""
        same = next((lab for lab in labels if lab.name == name), None)
        if same is not None:
            return labels, same
        color = color or next_color(labels)
        if self.link is not None and self.link.allocate is not None:
            new = self.link.allocate(name, color)
        else:
            new = Label(max((lab.id for lab in labels), default=0) + 1, name, color)
        if any(lab.id == new.id for lab in labels):  # renamed by another tab a moment ago
            raise StoreError(f"The label “{name}” was just changed in another tab; try again.")
        return (*labels, new), new

    def notify(self, text: str, error: bool = False) -> None:
        # Messages reach a remote page: an absolute server path (an upload's temp file, a
        # folder) is cut to its last part wherever the text came from.
        self.message = without_paths(text)
        self.message_is_error = error

    def commit(self, doc: Doc) -> None:
        """Make ``doc`` current; the old one becomes undoable."""
        if doc is self.doc:
            return
        self.undo_stack.append(self.doc)
        del self.undo_stack[:-HISTORY_LIMIT]
        self.redo_stack.clear()
        self.doc = doc
        self._fix_refs()

    def start_over(self, doc: Doc) -> None:
        """Make ``doc`` current with an empty history: in a project each image has its own
        history, and an undo must never bring another image's objects back."""
        self.doc = doc
        self.undo_stack.clear()
        self.redo_stack.clear()
        self.selected_object = None
        self._fix_refs()

    def shelve(self) -> None:
        """Keep the open project image's history (``shelf``) before another image opens."""
        if self.link is None or self.doc.image is None:
            return
        bare = {
            id(d): replace(d, image=None) for d in (self.doc, *self.undo_stack, *self.redo_stack)
        }
        entry = ShelvedHistory(
            self.doc.image.key,
            bare[id(self.doc)],
            [bare[id(d)] for d in self.undo_stack],
            [bare[id(d)] for d in self.redo_stack],
            self.link,
        )
        self.shelf.put(self.link.image_id, entry)

    def unshelve(self, image_id: int, image: ImageRef) -> bool:
        """Make the history this tab left on ``image_id`` current again, its docs showing
        ``image`` (reloaded); False when none is kept or the file's pixels changed since."""
        entry = self.shelf.take(image_id)
        if entry is None or entry.key != image.key:
            return False
        self.doc = replace(entry.doc, image=image)
        self.undo_stack = [replace(d, image=image) for d in entry.undo_stack]
        self.redo_stack = [replace(d, image=image) for d in entry.redo_stack]
        self.link = entry.link
        self.selected_object = None
        self._fix_refs()
        return True

    def replace_doc(self, doc: Doc) -> None:
        """Show ``doc`` (the project as saved, after another tab's change) with an empty
        history: an undo must not write back a state another tab has moved on from."""
        self.doc = doc
        self.undo_stack.clear()
        self.redo_stack.clear()
        self._fix_refs()

    def undo(self) -> bool:
        if not self.undo_stack:
            return False
        self.redo_stack.append(self.doc)
        self.doc = self.undo_stack.pop()
        self._fix_refs()
        return True

    def redo(self) -> bool:
        if not self.redo_stack:
            return False
        self.undo_stack.append(self.doc)
        self.doc = self.redo_stack.pop()
        self._fix_refs()
        return True

    def _fix_refs(self) -> None:
        """Keep the tab's selections pointing at things that exist in the current doc."""
        if self.selected_object is not None and self.doc.object(self.selected_object) is None:
            self.selected_object = None
        if self.doc.label_by_id(self.active_label_id) is None and self.doc.labels:
            self.active_label_id = self.doc.labels[0].id
