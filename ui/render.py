"""Drawing for the page: mask overlays, candidate thumbnails, and the HTML of the custom widgets.

Plain numpy/PIL/OpenCV/string code with no Gradio and no tensors, so it is fast to test. Masks are
displayed at a capped resolution (the browser scales the overlay over the photo anyway); exports
never go through here and stay at the original size.
"""

from __future__ import annotations

import base64
import io
import itertools
import logging
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from sam.dataset.colors import color_rgb
from sam.dataset.store import ImageRecord
from sam.prefetch import PrefetchStatus

from .html import FALLBACK_COLOR, attrs, css_color, text
from .state import Candidates, Doc, Mask, Proposals, Session

logger = logging.getLogger(__name__)

MAX_DISPLAY_SIDE = 1280  # overlay resolution cap; the photo itself is shown at up to 2048
MAX_PHOTO_SIDE = 2048
THUMB_SIDE = 168
CURRENT_OUTLINE = (255, 255, 255)
# Every stage render differs (data-rev), so the browser's diff also clears markers that
# stage.js drew optimistically for a click the server rejected.
_revision = itertools.count(1)


def hex_to_rgb(color: str) -> tuple[int, int, int]:
    """``'#rrggbb'`` -> ``(r, g, b)``; the fallback colour's for anything that is not one."""
    return color_rgb(css_color(color))


def display_size(height: int, width: int, max_side: int = MAX_DISPLAY_SIDE) -> tuple[int, int]:
    scale = min(1.0, max_side / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def sample_grid(height: int, width: int, out_h: int, out_w: int) -> tuple[np.ndarray, np.ndarray]:
    """Source row/column of each display pixel (nearest, pixel centres)."""
    rows = np.minimum(((np.arange(out_h) + 0.5) * height / out_h).astype(np.int64), height - 1)
    cols = np.minimum(((np.arange(out_w) + 0.5) * width / out_w).astype(np.int64), width - 1)
    return rows, cols


def sample_mask(
    mask: Mask, rows: np.ndarray, cols: np.ndarray
) -> tuple[slice, slice, np.ndarray] | None:
    """The display-resolution part of ``mask``: where it goes and its pixels (None if empty).

    Works on the bounding-box crop so drawing many small objects stays cheap.
    """
    h, w = mask.crop_shape
    if h == 0:
        return None
    r0, r1 = np.searchsorted(rows, [mask.top, mask.top + h])
    c0, c1 = np.searchsorted(cols, [mask.left, mask.left + w])
    if r1 <= r0 or c1 <= c0:
        return None
    # Rows, then columns: two gathers of whole lines, 5x faster than one np.ix_ gather.
    sub = mask.crop[rows[r0:r1] - mask.top][:, cols[c0:c1] - mask.left]
    return slice(int(r0), int(r1)), slice(int(c0), int(c1)), sub


_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))


def outline(sub: np.ndarray, width: int = 1) -> np.ndarray:
    """Pixels of ``sub`` (bool) within ``width`` steps of its outside (4-neighbour steps; the
    outside of the array counts as outside the mask): an inner contour."""
    inner = cv2.erode(
        np.ascontiguousarray(sub).view(np.uint8),
        _CROSS,
        iterations=width,
        borderType=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    return sub & ~inner.view(bool)


class Palette:
    """The RGBA colours of an indexed overlay, numbered as they are first asked for; index 0 is
    transparent."""

    def __init__(self) -> None:
        self._index: dict[tuple[int, ...], int] = {(0, 0, 0, 0): 0}

    def __call__(self, rgb: tuple[int, int, int], alpha: int) -> int:
        """The index of ``rgb`` at ``alpha``, added when new."""
        return self._index.setdefault((*rgb, alpha), len(self._index))

    def rgba(self) -> np.ndarray:
        """``(n, 4)`` uint8: row ``i`` is the colour of index ``i``."""
        return np.array(list(self._index), dtype=np.uint8)


def _paint(
    canvas: np.ndarray,
    mask: Mask,
    grid: tuple[np.ndarray, np.ndarray],
    fill: int,
    line: int,
    line_width: int = 1,
) -> None:
    """Paint ``mask`` into the index map ``canvas`` as palette index ``fill``, its
    ``line_width``-pixel contour as ``line``."""
    placed = sample_mask(mask, *grid)
    if placed is None:
        return
    rs, cs, sub = placed
    region = canvas[rs, cs]
    region[sub] = fill
    region[outline(sub, line_width)] = line


def overlay_indexed(
    session: Session, size: tuple[int, int] | None = None
) -> tuple[np.ndarray, np.ndarray] | None:
    """Objects (unless hidden or 'only current'), the current mask and any proposals as an index
    map ``(h, w)`` uint16 with its palette ``(n, 4)`` uint8 RGBA.

    Painting one index per pixel instead of four channels, and sending few colours as a palette
    PNG, is what keeps a click's redraw cheap (:func:`overlay_data_uri`).
    """
    doc, view = session.doc, session.view
    if doc.image is None:
        return None
    height, width = doc.image.size
    out_h, out_w = size or display_size(height, width)
    grid = sample_grid(height, width, out_h, out_w)
    canvas = np.zeros((out_h, out_w), dtype=np.uint16)
    palette = Palette()
    alpha = round(255 * min(max(view.opacity, 0.0), 1.0))
    if not view.only_current:
        for obj in doc.objects:
            if obj.hidden or obj.id == doc.editing:
                continue
            rgb = hex_to_rgb(doc.color_of(obj))
            selected = obj.id == session.selected_object
            line = palette(CURRENT_OUTLINE if selected else rgb, 255)
            _paint(canvas, obj.mask, grid, palette(rgb, alpha), line, 2 if selected else 1)
    if doc.candidates is not None:
        rgb = hex_to_rgb(current_color(session))
        fill, line = palette(rgb, alpha), palette(CURRENT_OUTLINE, 255)
        _paint(canvas, doc.candidates.mask, grid, fill, line, 2)
    if doc.proposals is not None:
        _paint_proposals(canvas, doc.proposals, grid, alpha, palette)
    return canvas, palette.rgba()


def _paint_proposals(
    canvas: np.ndarray,
    proposals: Proposals,
    grid: tuple[np.ndarray, np.ndarray],
    alpha: int,
    palette: Palette,
) -> None:
    """Each proposal in its own colour, largest first so small ones stay visible (and
    clickable: a click toggles the smallest under the pointer). Accepted ones are filled
    strongly with a white contour; the others are lighter, with a contour in their colour.

    A hundred proposals are drawn on every toggle, so they are painted as proposal indices
    into two int maps (fill, contour) and turned into palette indices in one lookup at the end.
    """
    n = len(proposals.items)
    height, width = canvas.shape[:2]
    fill = np.full((height, width), n, dtype=np.int32)  # n: nothing
    line = np.full((height, width), n, dtype=np.int32)
    order = sorted(range(n), key=lambda i: -proposals.items[i].mask.area)
    for i in order:
        p = proposals.items[i]
        placed = sample_mask(p.mask, *grid)
        if placed is None:
            continue
        rs, cs, sub = placed
        fill[rs, cs][sub] = i
        edge = line[rs, cs]
        edge[sub] = n  # painter's order: this fill covers the contours below it
        edge[outline(sub, 3 if p.accepted else 2)] = i
    pale = max(40, round(alpha * 0.55))
    strong = max(150, alpha)
    fill_index = np.zeros(n + 1, dtype=canvas.dtype)
    line_index = np.zeros(n + 1, dtype=canvas.dtype)
    for i, p in enumerate(proposals.items):
        rgb = hex_to_rgb(p.color)
        fill_index[i] = palette(rgb, strong if p.accepted else pale)
        line_index[i] = palette(CURRENT_OUTLINE if p.accepted else rgb, 255)
    drawn = fill < n
    canvas[drawn] = fill_index[fill[drawn]]
    edged = line < n
    canvas[edged] = line_index[line[edged]]


def current_color(session: Session) -> str:
    doc = session.doc
    if doc.editing is not None and (obj := doc.object(doc.editing)) is not None:
        return doc.color_of(obj)
    lab = doc.label(session.active_label)
    return lab.color if lab else FALLBACK_COLOR


def overlay_data_uri(canvas: np.ndarray, palette: np.ndarray) -> str:
    """The index map ``canvas`` with its RGBA ``palette`` as a PNG data URI: a palette PNG (one
    byte a pixel, alpha in its tRNS chunk) up to 256 colours, else RGBA.

    Level 1 compression: overlays change on every click. An 853x1280 overlay, 2 Zen 3 cores:
    6 ms and 65 KB as a palette PNG, 45-56 ms and 165 KB as RGBA.
    """
    buf = io.BytesIO()
    if len(palette) <= 256:
        image = Image.fromarray(canvas.astype(np.uint8), mode="P")
        image.putpalette(palette[:, :3].tobytes())
        image.save(buf, format="PNG", compress_level=1, transparency=palette[:, 3].tobytes())
    else:
        Image.fromarray(palette[canvas]).save(buf, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def jpeg_data_uri(rgb: np.ndarray, quality: int = 85) -> str:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def write_display_image(image: np.ndarray, key: str, folder: Path) -> Path:
    """Save the photo the browser shows (downscaled JPEG), named by content so it is reused."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{key}.jpg"
    if not path.exists():
        h, w = image.shape[:2]
        dh, dw = display_size(h, w, MAX_PHOTO_SIDE)
        pil = Image.fromarray(image)
        if (dh, dw) != (h, w):
            pil = pil.resize((dw, dh), Image.Resampling.LANCZOS)
        tmp = path.with_suffix(".tmp")
        pil.save(tmp, format="JPEG", quality=90)
        tmp.replace(path)  # atomic: a concurrent reader never sees half a file
    return path


def file_url(path: str | Path) -> str:
    """URL under which Gradio serves a file from an allowed folder."""
    return "/gradio_api/file=" + str(Path(path).resolve())


# -- the image stage ---------------------------------------------------------------------------


def _pct(value: float, total: int) -> str:
    return f"{100.0 * value / total:.4f}%"


def stage_html(session: Session, busy: str | None = None, job: str = "") -> str:
    """The interactive image: photo, overlay, prompt markers, and a busy veil while encoding.

    ``static/stage.js`` turns pointer events on ``.sam-canvas`` into prompts; it reads the
    original image size from ``data-w``/``data-h`` to map display pixels to image pixels.
    """
    doc = session.doc
    mode = "neg" if session.view.negative_mode else "pos"
    rev = next(_revision)
    if doc.image is None:
        veil = _busy_html(busy, job) if busy else ""
        return (
            f"<div{attrs(class_='sam-stage sam-empty', data_mode=mode, data_rev=rev)}>"
            '<div class="sam-drop"><div class="sam-drop-icon">⬆</div>'
            "<div><b>Drop an image here</b></div>"
            "<div>or click here to choose a file, or pick an example on the right</div></div>"
            f"{veil}</div>"
        )
    height, width = doc.image.size
    stage = attrs(
        class_="sam-stage", data_mode=mode, data_w=width, data_h=height, data_key=doc.image.key,
        data_rev=rev, data_proposals="1" if doc.proposals is not None else None,
    )  # fmt: skip
    photo = file_url(doc.image.display_path)
    parts = [
        f"<div{stage}>",
        f"<div{attrs(class_='sam-canvas', style=f'--ar:{width / height:.6f}')}>",
        f"<img{attrs(class_='sam-base', alt='', draggable='false', src=photo)}>",
    ]
    indexed = overlay_indexed(session)
    if indexed is not None and indexed[0].any():
        uri = overlay_data_uri(*indexed)
        parts.append(f"<img{attrs(class_='sam-overlay', alt='', draggable='false', src=uri)}>")
    box = doc.prompt.box
    if box is not None:
        x0, y0, x1, y1 = box
        place = (
            f"left:{_pct(x0, width)};top:{_pct(y0, height)};"
            f"width:{_pct(x1 - x0, width)};height:{_pct(y1 - y0, height)}"
        )
        frame = attrs(class_="sam-box", data_box=f"{x0},{y0},{x1},{y1}", style=place)
        parts.append(f"<div{frame}></div>")
    for x, y, label in doc.prompt.points:
        kind = "pos" if label == 1 else "neg"
        place = f"left:{_pct(x + 0.5, width)};top:{_pct(y + 0.5, height)}"
        point = attrs(class_=f"sam-pt sam-{kind}", data_x=x, data_y=y, style=place)
        parts.append(f"<div{point}></div>")
    parts.append('<div class="sam-live"></div>')
    if doc.proposals is not None:
        parts.append(_review_banner(doc.proposals))
    if busy:
        parts.append(_busy_html(busy, job))
    parts.append("</div>")
    parts.append(f'<div class="sam-hud">{_hud_text(session)}</div>')
    parts.append("</div>")
    return "".join(parts)


def _busy_html(note: str, job: str = "") -> str:
    """The veil over the stage; its clock runs from the first render of ``job`` (a long task
    re-renders the veil to show its progress)."""
    since = int(time.time() * 1000)
    clock = attrs(class_="sam-elapsed", data_since=since, data_job=job or None)
    return (
        f'<div class="sam-busy"><div class="sam-spinner"></div><span>{text(note)}</span>'
        f"<span{clock}>0.0 s</span></div>"
    )


def _review_banner(proposals: Proposals) -> str:
    n, accepted = len(proposals.items), len(proposals.accepted)
    return (
        '<div class="sam-review-banner"><b>Reviewing proposals</b> · '
        f"{accepted}/{n} accepted · click a mask: accept / reject · "
        "<kbd>Enter</kbd> add · <kbd>Esc</kbd> discard</div>"
    )


def _hud_text(session: Session) -> str:
    doc = session.doc
    assert doc.image is not None
    height, width = doc.image.size
    bits = [f"{text(doc.image.name)} · {width}×{height}"]
    n_pos = sum(1 for p in doc.prompt.points if p[2] == 1)
    n_neg = len(doc.prompt.points) - n_pos
    if doc.proposals is not None:
        n, accepted = len(doc.proposals.items), len(doc.proposals.accepted)
        bits.append(f"{_count(n, 'proposal')}, {accepted} accepted · click = accept / reject")
    elif doc.prompt.empty and doc.candidates is None:
        bits.append("click = object · right-click / Shift+click = background · drag = box")
    if not doc.prompt.empty:
        prompt = f"{n_pos} positive, {n_neg} negative"
        if doc.prompt.box is not None:
            prompt += " + box"
        bits.append(prompt)
    if doc.candidates is not None:
        c = doc.candidates
        bits.append(
            f"mask {c.selected + 1}/{len(c.masks)} · IoU {c.score:.3f} · {c.mask.area:,} px"
        )
    if doc.editing is not None:
        bits.append(f"editing object #{doc.editing}")
    return " · ".join(bits)


# -- candidates strip --------------------------------------------------------------------------


def _thumb_window(doc: Doc) -> tuple[int, int, int, int]:
    """Crop shared by all thumbnails: the candidates' union box plus a margin, so part-vs-whole
    differences are visible even for small objects."""
    assert doc.image is not None and doc.candidates is not None
    height, width = doc.image.size
    boxes = [m.bbox for m in doc.candidates.masks if m.bbox is not None]
    if not boxes:
        return (0, 0, width, height)
    x0 = min(b[0] for b in boxes)
    y0 = min(b[1] for b in boxes)
    x1 = max(b[2] for b in boxes)
    y1 = max(b[3] for b in boxes)
    side = max(x1 - x0, y1 - y0) * 1.25 + 16
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left = int(max(0, min(cx - side / 2, width - side)))
    top = int(max(0, min(cy - side / 2, height - side)))
    return (left, top, int(min(width, left + side)), int(min(height, top + side)))


def candidate_thumbnails(session: Session) -> list[str]:
    """One JPEG data URI per candidate: the photo with that mask tinted and outlined."""
    doc = session.doc
    if doc.image is None or doc.candidates is None:
        return []
    left, top, right, bottom = _thumb_window(doc)
    th, tw = display_size(bottom - top, right - left, THUMB_SIDE)
    rows, cols = sample_grid(bottom - top, right - left, th, tw)
    rows, cols = rows + top, cols + left  # pixels of the whole image
    base = doc.image.array[rows][:, cols].astype(np.float32)
    rgb = np.array(hex_to_rgb(current_color(session)), dtype=np.float32)
    uris = []
    for mask in doc.candidates.masks:
        # Sampled from the mask's own crop: no full-size unpacking per candidate.
        sub = np.zeros((th, tw), dtype=bool)
        if (placed := sample_mask(mask, rows, cols)) is not None:
            rs, cs, part = placed
            sub[rs, cs] = part
        img = base.copy()
        img[sub] = img[sub] * 0.45 + rgb * 0.55
        img[outline(sub)] = (255, 255, 255)
        uris.append(jpeg_data_uri(img.astype(np.uint8)))
    return uris


def candidates_html(session: Session) -> str:
    doc = session.doc
    cands: Candidates | None = doc.candidates
    if cands is None:
        if doc.proposals is not None:
            hint = (
                "Reviewing proposals: clicks accept or reject them (panel on the right). "
                "Add accepted (Enter) or Discard (Esc) to click objects again."
            )
        elif doc.image is not None:
            hint = "Click the object: one click gives three candidate masks to choose from."
        else:
            hint = "Candidates appear here after the first click."
        return f'<div class="sam-cands sam-cands-empty">{hint}</div>'
    cards = []
    total = doc.image.size[0] * doc.image.size[1] if doc.image else 1
    for i, (uri, score, mask) in enumerate(
        zip(candidate_thumbnails(session), cands.scores, cands.masks, strict=True)
    ):
        selected = " sam-selected" if i == cands.selected else ""
        card = attrs(
            class_=f"sam-cand{selected}", data_event="pick", data_index=i,
            title=f"Use candidate {i + 1}",
        )  # fmt: skip
        cards.append(
            f"<button{card}><img{attrs(alt=f'candidate {i + 1}', src=uri)}>"
            f'<span class="sam-cand-cap"><b>{i + 1}</b> IoU {score:.3f} · '
            f"{100 * mask.area / total:.1f}%</span></button>"
        )
    note = (
        "Best first. Click one to use it; more clicks refine the chosen one."
        if len(cands.masks) > 1
        else "Refined mask (more prompts give one mask)."
    )
    return f'<div class="sam-cands">{"".join(cards)}<div class="sam-cands-note">{note}</div></div>'


# -- labels and objects ------------------------------------------------------------------------


def labels_html(session: Session) -> str:
    doc = session.doc
    counts: dict[str, int] = {}
    for obj in doc.objects:
        counts[obj.label] = counts.get(obj.label, 0) + 1
    chips = []
    for i, lab in enumerate(doc.labels):
        active = " sam-active" if lab.name == session.active_label else ""
        key = f"<kbd>{i + 1}</kbd>" if i < 9 else ""
        chip = attrs(
            class_=f"sam-chip{active}", data_event="choose", data_index=i,
            title=f"Label new objects as {lab.name}",
        )  # fmt: skip
        chips.append(
            f"<button{chip}>{key}{_swatch(lab.color)}"
            f"{text(lab.name)} <small>({counts.get(lab.name, 0)})</small></button>"
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
            f'<span class="sam-obj-name">#{obj.id} {text(obj.label)}</span>'
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
        f'<div class="sam-props-head"><b>{what}</b>: {_count(n, "proposal")}, '
        f'<b class="sam-props-count">{accepted}</b> accepted — click masks on the image '
        "(the smallest under the pointer) or chips here to accept / reject.</div>"
        f'<div class="sam-props">{"".join(chips)}</div>'
    )


def message_html(session: Session) -> str:
    if not session.message:
        return ""
    kind = "sam-msg sam-error" if session.message_is_error else "sam-msg"
    return f"<div{attrs(class_=kind)}>{text(session.message)}</div>"


# -- project gallery ---------------------------------------------------------------------------

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


def _count(n: int, noun: str) -> str:
    """``1 proposal``, ``3 proposals``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"
