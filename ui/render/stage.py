"""The HTML of the image stage (photo, overlay, prompts, busy veil) and the candidates strip."""

from __future__ import annotations

import dataclasses
import itertools
import time
from pathlib import Path

import numpy as np

from .. import browser_decode
from ..html import attrs, text
from ..state import Candidates, Doc, Proposals, Session
from .media import file_url
from .overlay import (
    current_color,
    display_size,
    hex_to_rgb,
    jpeg_data_uri,
    outline,
    overlay_data_uri,
    overlay_indexed,
    sample_grid,
    sample_mask,
)
from .panels import plural

THUMB_SIDE = 168

# Every stage render differs (data-rev), so the browser's diff also clears markers that
# stage.js drew optimistically for a click the server rejected.
_revision = itertools.count(1)


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
    display_h, display_w = display_size(height, width)
    cands = doc.candidates
    stage = attrs(
        class_="sam-stage", data_mode=mode, data_w=width, data_h=height, data_key=doc.image.key,
        data_rev=rev, data_proposals="1" if doc.proposals is not None else None,
        data_dh=display_h, data_dw=display_w,
        data_cands=len(cands.masks) if cands is not None else None,
        data_selected=cands.selected if cands is not None else None,
        data_editing="1" if doc.editing is not None else None,
        # A brush/eraser touch-up: the browser's decoder has not seen this mask_input.
        data_painted="1" if cands is not None and cands.logits is None else None,
        data_color=current_color(session), data_opacity=f"{session.view.opacity:.3f}",
        **_decoder_attrs(session),
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
        if cands is not None and doc.proposals is None:
            parts.append(_under_layer(session))
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


def _decoder_attrs(session: Session) -> dict[str, str | None]:
    """Where ``static/stage.js`` finds the browser decoder for this image (``ui/browser_decode``):
    the worker, ONNX Runtime Web, the decoder graph and the embedding, once the server wrote
    them; ``data-decoder-state`` says whether they are coming."""
    doc = session.doc
    assert doc.image is not None
    registry = browser_decode.for_folder(Path(doc.image.display_path).parent)
    files = registry.files(doc.image.key, session.model_source)
    common = {
        "data_worker": file_url(browser_decode.WORKER),
        "data_vendor": file_url(browser_decode.VENDOR) + "/",
        "data_decoder_state": registry.state(session.model_source),
    }
    if files is None:
        return common
    return {
        **common,
        "data_decoder": files.decoder_url,
        "data_embedding": files.embedding_url,
        "data_dims": ",".join(str(v) for v in files.size),
    }


def _under_layer(session: Session) -> str:
    """The overlay without the current mask, hidden: ``static/stage.js`` shows it under a mask
    the browser decoded itself, until the server's overlay for that click arrives."""
    doc = session.doc
    shown = (o for o in doc.objects if o.id != doc.editing and not o.hidden)
    if session.view.only_current or not any(shown):
        return ""
    without = dataclasses.replace(session, doc=dataclasses.replace(doc, candidates=None))
    indexed = overlay_indexed(without)
    if indexed is None or not indexed[0].any():
        return ""
    uri = overlay_data_uri(*indexed)
    return f"<img{attrs(class_='sam-under', alt='', draggable='false', hidden='', src=uri)}>"


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
        bits.append(f"{plural(n, 'proposal')}, {accepted} accepted · click = accept / reject")
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
