"""What each user action does to a :class:`Session`, independent of Gradio.

Every function takes the session (and a predictor when SAM has to run), commits a new undoable
``Doc`` and sets ``session.message``. Engine errors (``SamError``) propagate unchanged: the
handlers turn them into a message on the page and the session is left as it was.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np

from sam import SamPredictor
from sam.cache import array_digest
from sam.dataset.annotations import Label
from sam.dataset.colors import check_color
from sam.errors import PromptError
from sam.predictor import check_point_count

from .brush import Stroke, paint
from .errors import LabelError, MaskImportError, ObjectError, StrokeError
from .history import describe_step
from .render import write_display_image
from .state import (
    AnnotatedObject,
    Candidates,
    Doc,
    ImageRef,
    Mask,
    Prompt,
    Session,
    frozen,
)

logger = logging.getLogger(__name__)


# -- image -------------------------------------------------------------------------------------


def image_ref(image: np.ndarray, name: str, media_dir: Path) -> ImageRef:
    """An opened image: read-only pixels, content key, and the JPEG the browser shows."""
    image = frozen(np.ascontiguousarray(image))
    key = array_digest(image)
    path = write_display_image(image, key, media_dir)
    return ImageRef(key=key, array=image, name=name, display_path=str(path))


def open_image(session: Session, image: np.ndarray, name: str, media_dir: Path) -> None:
    """Show a new image; objects of the previous one stay reachable through Undo."""
    ref = image_ref(image, name, media_dir)
    session.commit(Doc(image=ref, labels=session.doc.labels))
    session.selected_object = None
    h, w = ref.size
    session.notify(f"Opened {name} ({w}×{h}).")


def encode(session: Session, predictor: SamPredictor) -> str:
    """Run the image encoder on the current image unless its embedding is cached.

    Returns where the embedding came from: "memory", "disk" or "encoder".
    """
    doc = session.doc
    if doc.image is None:
        raise PromptError("Open an image first.")
    predictor.set_image(doc.image.array, digest=doc.image.key)
    return predictor.embedding_source


# -- prompts -----------------------------------------------------------------------------------


def predict(doc: Doc, prompt: Prompt, predictor: SamPredictor) -> Candidates:
    """Run SAM for ``prompt`` following Meta's practice.

    One click alone asks for three candidates. Anything more asks for one mask and feeds the
    chosen candidate's low-res logits back as ``mask_input``, so each click refines the mask the
    user is looking at instead of starting over.
    """
    if doc.image is None:
        raise PromptError("Open an image first.")
    predictor.set_image(doc.image.array, digest=doc.image.key)
    # Re-editing refines the object's mask, and a touched-up mask (brush/eraser) refines what
    # was painted: even a first click must feed it as mask_input (objects imported or reloaded
    # without clicks, and masks painted from nothing, start from their mask alone).
    multimask = prompt.wants_candidates() and doc.candidates is None
    mask_input = None
    if not multimask and doc.candidates is not None:
        mask_input = doc.candidates.selected_logits()
        if mask_input is None:  # a mask without logits: laid out as this model's family wants
            mask_input = predictor.engine.mask_prompt(doc.candidates.mask.to_array())
    coords = labels = None
    if prompt.points:
        coords = np.array([[x, y] for x, y, _ in prompt.points], dtype=np.float32)
        labels = np.array([lab for _, _, lab in prompt.points], dtype=np.int64)
    box = None if prompt.box is None else np.array(prompt.box, dtype=np.float32)
    masks, scores, logits = predictor.predict(
        point_coords=coords,
        point_labels=labels,
        box=box,
        mask_input=mask_input,
        multimask_output=multimask,
    )
    return Candidates(
        masks=tuple(Mask.from_array(m) for m in masks),
        scores=tuple(float(s) for s in scores),
        logits=frozen(np.array(logits, dtype=np.float32)),
    )


def _check_inside(doc: Doc, x: float, y: float) -> None:
    assert doc.image is not None
    height, width = doc.image.size
    if not (0 <= x < width and 0 <= y < height):
        raise PromptError(f"({x:g}, {y:g}) is outside the {width}×{height} image.")


def add_point(session: Session, x: int, y: int, positive: bool, predictor: SamPredictor) -> None:
    doc = session.doc
    if doc.image is None:
        raise PromptError("Open an image first, then click on it.")
    _check_inside(doc, x, y)
    prompt = doc.prompt.with_point(x, y, 1 if positive else 0)
    check_point_count(prompt.points)  # before set_image, which may have to encode again
    cands = predict(doc, prompt, predictor)
    session.commit(replace(doc, prompt=prompt, candidates=cands))
    kind = "positive" if positive else "negative"
    session.notify(f"Added a {kind} point at ({x}, {y}).")


def set_box(session: Session, box: tuple[int, int, int, int], predictor: SamPredictor) -> None:
    """Set (or replace) the box of the current prompt; points already placed are kept."""
    doc = session.doc
    if doc.image is None:
        raise PromptError("Open an image first, then drag a box on it.")
    height, width = doc.image.size
    x0, y0, x1, y1 = (round(float(v)) for v in box)
    x0, x1 = sorted((max(0, min(width, x0)), max(0, min(width, x1))))
    y0, y1 = sorted((max(0, min(height, y0)), max(0, min(height, y1))))
    if x1 - x0 < 1 or y1 - y0 < 1:
        raise PromptError("The box is too small: drag a larger rectangle.")
    prompt = doc.prompt.with_box((x0, y0, x1, y1))
    cands = predict(doc, prompt, predictor)
    session.commit(replace(doc, prompt=prompt, candidates=cands))
    session.notify(f"Box [{x0}, {y0}, {x1}, {y1}].")


def select_candidate(session: Session, index: int) -> None:
    doc = session.doc
    if doc.candidates is None or not 0 <= index < len(doc.candidates.masks):
        return
    if index == doc.candidates.selected:
        return
    session.commit(replace(doc, candidates=replace(doc.candidates, selected=index)))
    session.notify(f"Using candidate {index + 1} (IoU {doc.candidates.scores[index]:.3f}).")


def clear_prompt(session: Session) -> None:
    doc = session.doc
    if doc.prompt.empty and doc.candidates is None and doc.editing is None:
        return
    note = "Edit cancelled." if doc.editing is not None else "Prompts cleared."
    session.commit(replace(doc, prompt=Prompt(), candidates=None, editing=None))
    session.notify(note)


def touch_up(session: Session, stroke: Stroke) -> None:
    """Paint (or erase) ``stroke`` on the mask being worked on, as one undoable step.

    The mask is the current one (the chosen candidate) when there is one, else the object
    selected in the list; a brush with neither starts a new mask from nothing. An object's
    own mask (selected, or being re-edited) changes at once, so a project saves the stroke like
    any edit. The touched-up mask has no decoder logits: the next click feeds it to SAM as
    ``mask_input`` through the engine's ``mask_prompt`` (see :func:`predict`).
    """
    doc = session.doc
    if doc.image is None:
        raise StrokeError("Open an image first, then paint on it.")
    if doc.proposals is not None:
        raise StrokeError("Add or discard the proposals on show before painting.")
    cands = doc.candidates
    target = doc.editing if cands is not None else session.selected_object
    obj = _get_object(session, target) if target is not None else None
    if cands is not None:
        before, score = cands.mask, cands.score
    elif obj is not None:
        before, score = obj.mask, obj.score
    elif stroke.erase:
        raise StrokeError(
            "Nothing to erase: click on an object first, or select one under Objects."
        )
    else:
        before, score = Mask.from_array(np.zeros(doc.image.size, dtype=bool)), 1.0
    painted = Mask.from_array(paint(before.to_array(), stroke))
    if painted.area == before.area:  # a brush only adds pixels and an eraser only removes
        session.notify(f"The {stroke.name} changed no pixel of the mask.")
        return
    new = doc
    if obj is None or cands is not None:
        new = replace(new, candidates=Candidates(masks=(painted,), scores=(score,), logits=None))
    if obj is not None:
        changed = replace(obj, mask=painted, logits=None, hidden=False)
        new = replace(new, objects=tuple(changed if o.id == obj.id else o for o in doc.objects))
    session.commit(new)
    where = f"object #{obj.id}" if obj is not None else "the current mask"
    session.notify(
        f"{stroke.name.capitalize()} on {where}: {painted.area - before.area:+,} px "
        f"({painted.area:,} px now)."
    )


def accept(session: Session) -> AnnotatedObject | None:
    """Store the current mask as an object with the active label (or finish a re-edit)."""
    doc = session.doc
    cands = doc.candidates
    if cands is None:
        session.notify("Nothing to accept yet: click on an object first.", error=True)
        return None
    if cands.mask.area == 0:
        session.notify("The mask is empty: add a positive click on the object.", error=True)
        return None
    selected = cands.selected_logits()
    logits = None if selected is None else frozen(np.array(selected))
    editing = doc.object(doc.editing) if doc.editing is not None else None
    if editing is not None:
        obj = replace(
            editing, mask=cands.mask, score=cands.score, prompt=doc.prompt, logits=logits,
            hidden=False,
        )  # fmt: skip
        objects = tuple(obj if o.id == obj.id else o for o in doc.objects)
        next_id = doc.next_id
        verb = "Updated"
    else:
        obj = AnnotatedObject(
            id=doc.next_id, label_id=_active_label_id(session), mask=cands.mask,
            score=cands.score, prompt=doc.prompt, logits=logits,
        )  # fmt: skip
        objects = (*doc.objects, obj)
        next_id = doc.next_id + 1
        verb = "Added"
    session.commit(
        replace(
            doc, objects=objects, prompt=Prompt(), candidates=None, editing=None, next_id=next_id
        )
    )
    session.notify(
        f"{verb} object #{obj.id} ({session.doc.label_name(obj)}, {obj.mask.area:,} px)."
    )
    return obj


def _active_label_id(session: Session) -> int:
    """The label new objects get: the active one, else the first (an image has labels)."""
    doc = session.doc
    lab = doc.label_by_id(session.active_label_id) or doc.labels[0]
    return lab.id


def undo(session: Session) -> None:
    if not session.undo_stack:
        session.notify("Nothing to undo.")
        return
    step = describe_step(session.undo_stack[-1], session.doc)
    session.undo()
    session.notify(f"Undone: {step}.")


def redo(session: Session) -> None:
    if not session.redo_stack:
        session.notify("Nothing to redo.")
        return
    step = describe_step(session.doc, session.redo_stack[-1])
    session.redo()
    session.notify(f"Redone: {step}.")


# -- objects -----------------------------------------------------------------------------------


def _replace_object(session: Session, obj: AnnotatedObject) -> None:
    doc = session.doc
    session.commit(replace(doc, objects=tuple(obj if o.id == obj.id else o for o in doc.objects)))


def _get_object(session: Session, obj_id: int) -> AnnotatedObject:
    obj = session.doc.object(obj_id)
    if obj is None:
        raise ObjectError(f"Object #{obj_id} does not exist (deleted?).")
    return obj


def select_object(session: Session, obj_id: int | None) -> None:
    if obj_id is not None:
        _get_object(session, obj_id)
    session.selected_object = obj_id


def delete_object(session: Session, obj_id: int) -> None:
    doc = session.doc
    _get_object(session, obj_id)
    new = replace(doc, objects=tuple(o for o in doc.objects if o.id != obj_id))
    if doc.editing == obj_id:
        new = replace(new, prompt=Prompt(), candidates=None, editing=None)
    session.commit(new)
    session.notify(f"Deleted object #{obj_id} (Undo brings it back).")


def toggle_hidden(session: Session, obj_id: int) -> None:
    obj = _get_object(session, obj_id)
    _replace_object(session, replace(obj, hidden=not obj.hidden))
    session.notify(f"Object #{obj_id} {'hidden' if not obj.hidden else 'shown'}.")


def edit_object(session: Session, obj_id: int) -> None:
    """Bring an object's prompts and mask back so more clicks refine it; Accept saves it."""
    doc = session.doc
    obj = _get_object(session, obj_id)
    # Imported masks and objects reloaded from a project have no decoder logits: predict()
    # derives them from the mask (in the loaded model's layout) so the next click refines it.
    cands = Candidates(masks=(obj.mask,), scores=(obj.score,), logits=obj.logits)
    session.commit(replace(doc, prompt=obj.prompt, candidates=cands, editing=obj_id))
    session.selected_object = obj_id
    session.notify(f"Editing object #{obj_id}: click to refine, Enter to save, Esc to cancel.")


def relabel_object(session: Session, obj_id: int, name: str) -> None:
    """Rename an object by giving it another label; a new name becomes a new label."""
    name = name.strip()
    if not name:
        raise LabelError("A label name cannot be empty.")
    obj = _get_object(session, obj_id)
    doc = session.doc
    if doc.label_name(obj) == name:
        return
    labels, label = session.with_label(doc.labels, name)
    new_obj = replace(obj, label_id=label.id)
    session.commit(
        replace(
            doc,
            labels=labels,
            objects=tuple(new_obj if o.id == obj_id else o for o in doc.objects),
        )
    )
    session.notify(f"Object #{obj_id} is now “{name}”.")


def recolor_object(session: Session, obj_id: int, color: str) -> None:
    obj = _get_object(session, obj_id)
    color = normalize_color(color, session.doc.color_of(obj))
    if color == session.doc.color_of(obj):
        return
    _replace_object(session, replace(obj, color=color))
    session.notify(f"Object #{obj_id} recoloured {color}.")


def normalize_color(color: str | None, current: str) -> str:
    """A colour picked in the page as ``#rrggbb`` (``current`` when none was picked); anything
    else is refused with :class:`~sam.errors.ColorError`, as it would end up in the page."""
    return check_color(color) if color else current


# -- labels ------------------------------------------------------------------------------------


def _get_label(session: Session, label_id: int) -> Label:
    lab = session.doc.label_by_id(label_id)
    if lab is None:
        raise LabelError("That label does not exist any more (removed in another tab?).")
    return lab


def choose_label(session: Session, label_id: int) -> None:
    lab = _get_label(session, label_id)
    session.active_label_id = lab.id
    doc = session.doc
    # While re-editing, choosing a label relabels the object being edited.
    if doc.editing is not None and (obj := doc.object(doc.editing)) and obj.label_id != lab.id:
        _replace_object(session, replace(obj, label_id=lab.id))
    session.notify(f"New objects will be labelled “{lab.name}”.")


def add_label(session: Session, name: str, color: str | None = None) -> None:
    name = name.strip()
    doc = session.doc
    if not name:
        raise LabelError("Type a name for the new label.")
    if doc.label(name) is not None:
        raise LabelError(f"The label “{name}” already exists.")
    # The picker shows the active label's colour; a colour already taken means "not chosen".
    chosen = normalize_color(color, "")
    taken = {lab.color for lab in doc.labels}
    labels, label = session.with_label(doc.labels, name, chosen if chosen not in taken else None)
    session.commit(replace(doc, labels=labels))
    session.active_label_id = label.id
    session.notify(f"Added label “{name}”.")


def update_label(session: Session, label_id: int, new_name: str, color: str | None) -> None:
    """Rename and/or recolour a label; its objects keep it (they refer to its id)."""
    doc = session.doc
    lab = _get_label(session, label_id)
    new_name = new_name.strip() or lab.name
    if new_name != lab.name and doc.label(new_name) is not None:
        raise LabelError(f"The label “{new_name}” already exists.")
    new = replace(lab, name=new_name, color=normalize_color(color, lab.color))
    if new == lab:
        return
    session.commit(replace(doc, labels=tuple(new if x.id == lab.id else x for x in doc.labels)))
    session.notify(f"Label “{lab.name}” is now “{new_name}” ({new.color}).")


def remove_label(session: Session, label_id: int) -> None:
    doc = session.doc
    lab = _get_label(session, label_id)
    used = sum(1 for o in doc.objects if o.label_id == lab.id)
    if used:
        raise LabelError(f"“{lab.name}” is used by {used} object(s): relabel or delete them first.")
    if len(doc.labels) == 1:
        raise LabelError("Keep at least one label.")
    session.commit(replace(doc, labels=tuple(x for x in doc.labels if x.id != lab.id)))
    session.notify(f"Removed label “{lab.name}”.")


def add_objects(session: Session, masks: list[tuple[np.ndarray, str | None]], source: str) -> int:
    """Add ready-made masks (e.g. imported files) as objects, in one undoable step.

    ``masks`` holds ``(mask (H, W) bool, label name or None)``; None takes the active label,
    and a new name becomes a new label. Empty masks are skipped. Returns how many were added.
    """
    doc = session.doc
    if doc.image is None:
        raise MaskImportError("Open an image first, then import masks for it.")
    labels, objects, next_id = doc.labels, list(doc.objects), doc.next_id
    for mask, name in masks:
        if mask.shape != doc.image.size:
            h, w = mask.shape
            height, width = doc.image.size
            raise MaskImportError(
                f"The mask is {w}×{h} but {doc.image.name} is {width}×{height}: import masks "
                "made for this image."
            )
        if not mask.any():
            continue
        name = (name or "").strip()
        if name:
            labels, label = session.with_label(labels, name)
            label_id = label.id
        else:
            label_id = _active_label_id(session)
        objects.append(
            AnnotatedObject(
                id=next_id, label_id=label_id, mask=Mask.from_array(mask), score=1.0,
                source=source,
            )
        )  # fmt: skip
        next_id += 1
    added = next_id - doc.next_id
    if added:
        session.commit(replace(doc, labels=labels, objects=tuple(objects), next_id=next_id))
    return added
