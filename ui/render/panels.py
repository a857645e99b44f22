"""The HTML of the side panels: labels, objects, proposals, the message line, and a
project's gallery, progress and background encoding.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sam.dataset.store import ImageRecord
from sam.prefetch import PrefetchStatus

from ..html import attrs, css_color, text
from ..state import Session
from .media import file_url


def labels_html(session: Session) -> str:
    doc = session.doc
    counts: dict[int, int] = {}
    for obj in doc.objects:
        counts[obj.label_id] = counts.get(obj.label_id, 0) + 1
    chips = []
    for i, lab in enumerate(doc.labels):
        active = " sam-active" if lab.id == session.active_label_id else ""
        key = f"<kbd>{i + 1}</kbd>" if i < 9 else ""
        chip = attrs(
            class_=f"sam-chip{active}", data_event="choose", data_id=lab.id, data_index=i,
            title=f"Label new objects as {lab.name}",
        )  # fmt: skip
        chips.append(
            f"<button{chip}>{key}{_swatch(lab.color)}"
            f"{text(lab.name)} <small>({counts.get(lab.id, 0)})</small></button>"
        )
    return f'<div class="sam-chips">{"".join(chips)}</div>'


def objects_html(session: Session) -> str:
    doc = session.doc
    if not doc.objects:
        return (
            '<div class="sam-objs-empty">No objects yet. Click an object, then '
            "<b>Accept</b> (Enter) to add it here.</div>"
        )
    total = doc.image.size[0] * doc.image.size[1] if doc.image else 1
    rows = []
    for obj in doc.objects:
        classes = ["sam-obj"]
        if obj.id == session.selected_object:
            classes.append("sam-selected")
        if obj.hidden:
            classes.append("sam-hidden")
        if obj.id == doc.editing:
            classes.append("sam-editing")
        eye = "Show" if obj.hidden else "Hide"
        row = attrs(
            class_=" ".join(classes), data_event="act", data_id=obj.id, data_action="select"
        )
        rows.append(
            f"<div{row}>{_swatch(doc.color_of(obj))}"
            f'<span class="sam-obj-name">#{obj.id} {text(doc.label_name(obj))}</span>'
            f'<span class="sam-obj-meta">{100 * obj.mask.area / total:.1f}%</span>'
            f"<button{_act(obj.id, 'hide', eye)}>{'◌' if obj.hidden else '◉'}</button>"
            f"<button{_act(obj.id, 'edit', 'Re-edit with more clicks')}>✎</button>"
            f"<button{_act(obj.id, 'delete', 'Delete')}>✕</button></div>"
        )
    return f'<div class="sam-objs">{"".join(rows)}</div>'


def _swatch(color: str) -> str:
    """A colour square; only a validated ``#rrggbb`` reaches its style."""
    return f"<span{attrs(class_='sam-swatch', style=f'background:{css_color(color)}')}></span>"


def _act(obj_id: int, action: str, title: str) -> str:
    """The attributes of an object row's button (static/lists.js sends ``action``)."""
    return attrs(data_event="act", data_id=obj_id, data_action=action, title=title)


def proposals_html(session: Session) -> str:
    """The proposals under review as chips (colour, score, phrase); a click toggles one."""
    props = session.doc.proposals
    if props is None:
        return ""
    chips = []
    for i, p in enumerate(props.items):
        state = " sam-accepted" if p.accepted else ""
        name = f" {text(p.phrase)}" if p.phrase else ""
        mark = "✓" if p.accepted else "○"
        verb = "Reject" if p.accepted else "Accept"
        chip = attrs(
            class_=f"sam-prop{state}", data_event="toggle", data_index=i,
            title=f"{verb} proposal {i + 1} ({p.mask.area:,} px)",
        )  # fmt: skip
        chips.append(
            f'<button{chip}><span class="sam-prop-mark">{mark}</span>{_swatch(p.color)}'
            f"{name} <small>{p.score:.2f}</small></button>"
        )
    n, accepted = len(props.items), len(props.accepted)
    what = "Segment everything" if props.source == "everything" else f"Find “{text(props.query)}”"
    return (
        f'<div class="sam-props-head"><b>{what}</b>: {plural(n, "proposal")}, '
        f'<b class="sam-props-count">{accepted}</b> accepted — click masks on the image '
        "(the smallest under the pointer) or chips here to accept / reject.</div>"
        f'<div class="sam-props">{"".join(chips)}</div>'
    )


def message_html(session: Session) -> str:
    if not session.message:
        return ""
    kind = "sam-msg sam-error" if session.message_is_error else "sam-msg"
    return f"<div{attrs(class_=kind)}>{text(session.message)}</div>"


STATUS_NAMES = {"not_started": "Not started", "in_progress": "In progress", "done": "Done"}


def gallery_html(
    records: list[ImageRecord],
    current: int | None,
    total: int,
    thumbnail: Callable[[int], Path | None] = lambda image_id: None,
) -> str:
    """The project's images (already filtered) as clickable rows: thumbnail, status, name,
    number of objects."""
    if not records:
        what = "No images match this filter." if total else "This folder has no images."
        return f'<div class="sam-gallery sam-gallery-empty">{what}</div>'
    rows = []
    for rec in records:
        classes = f"sam-img sam-st-{rec.status}" + (" sam-current" if rec.id == current else "")
        count = f"{rec.num_objects} obj" if rec.num_objects else "—"
        thumb = thumbnail(rec.id)
        picture = (
            f"<img{attrs(class_='sam-thumb', alt='', loading='lazy', src=file_url(thumb))}>"
            if thumb
            else '<span class="sam-thumb"></span>'
        )
        status = STATUS_NAMES[rec.status]
        row = attrs(
            class_=classes, data_event="open", data_id=rec.id, title=f"{rec.path} — {status}"
        )
        rows.append(
            f"<button{row}>{picture}<span{attrs(class_='sam-dot', aria_label=status)}></span>"
            f'<span class="sam-img-name">{text(rec.path)}</span>'
            f'<span class="sam-img-meta">{count}</span></button>'
        )
    return f'<div class="sam-gallery">{"".join(rows)}</div>'


def progress_html(counts: dict[str, int], status: str | None) -> str:
    """ "n of N done", the current image's status, and a bar split by status."""
    total = sum(counts.values())
    done, busy = counts.get("done", 0), counts.get("in_progress", 0)
    current = ""
    if status:
        pill = attrs(class_=f"sam-pill sam-st-{status}", title="Status of this image")
        current = f'<span{pill}><span class="sam-dot"></span>{STATUS_NAMES[status]}</span>'
    return (
        '<div class="sam-progress">'
        f'<div class="sam-progress-head"><b>{done} of {total} done</b>{current}</div>'
        '<div class="sam-bar">'
        f"{_bar('sam-bar-done', done, total)}{_bar('sam-bar-busy', busy, total)}"
        "</div>"
        f'<div class="sam-progress-text">{busy} in progress · '
        f"{counts.get('not_started', 0)} not started</div></div>"
    )


def _bar(kind: str, count: int, total: int) -> str:
    """One part of the progress bar, ``count / total`` of its width."""
    return f"<span{attrs(class_=kind, style=f'width:{100 * count / max(total, 1):.2f}%')}></span>"


def prefetch_html(status: PrefetchStatus | None) -> str:
    """What the background encoder is doing for the neighbouring images."""
    if status is None:
        return ""
    if status.idle:
        return (
            '<div class="sam-prefetch sam-ready">⚡ Next and previous images ready: '
            "switching is instant.</div>"
        )
    name = text(Path(status.current).name) if status.current else "…"
    queued = f" ({status.pending} more queued)" if status.pending else ""
    return (
        f'<div class="sam-prefetch"><span class="sam-spinner sam-small"></span>'
        f"Encoding next image in the background: {name}{queued}</div>"
    )


def plural(n: int, noun: str) -> str:
    """``1 proposal``, ``3 proposals``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"
