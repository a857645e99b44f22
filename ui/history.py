"""What one undoable step did, in words, so undo and redo say what they took back or made
again ("Undone: added object #3.").

The history keeps documents, not commands (``ui/state.py``), so a step is described by
comparing the document before it with the one after: objects by id, labels by id, then the
prompt, candidates and proposals.
"""

from __future__ import annotations

from .state import AnnotatedObject, Doc, Mask

# More ids than this in one step are counted instead of listed.
LISTED = 3


def describe_step(before: Doc, after: Doc) -> str:
    """The change from ``before`` to ``after`` as a short phrase (``"added object #3"``,
    ``"renamed label “car” to “vehicle”"``); ``"the last step"`` when nothing named changed."""
    parts = _objects(before, after) + _labels(before, after)
    if not parts:
        parts = _work_in_progress(before, after)
    return ", ".join(parts) or "the last step"


def _ids(verb: str, ids: list[int]) -> str:
    if len(ids) == 1:
        return f"{verb} object #{ids[0]}"
    if len(ids) <= LISTED:
        return f"{verb} objects " + ", ".join(f"#{i}" for i in ids)
    return f"{verb} {len(ids)} objects"


def _objects(before: Doc, after: Doc) -> list[str]:
    old = {o.id: o for o in before.objects}
    new = {o.id: o for o in after.objects}
    parts = []
    if added := [i for i in new if i not in old]:
        parts.append(_ids("added", added))
    if removed := [i for i in old if i not in new]:
        parts.append(_ids("deleted", removed))
    for obj_id, obj in new.items():
        was = old.get(obj_id)
        if was is not None and was is not obj:
            parts.append(f"{_object_change(was, obj)} object #{obj_id}")
    return parts


def _object_change(was: AnnotatedObject, now: AnnotatedObject) -> str:
    if was.mask is not now.mask and was.prompt == now.prompt:
        return f"{_stroke(was.mask, now.mask)} on"  # only a brush or eraser keeps the prompt
    if was.mask is not now.mask or was.prompt != now.prompt:
        return "edited"
    if was.label_id != now.label_id:
        return "relabelled"
    if was.hidden != now.hidden:
        return "hid" if now.hidden else "showed"
    return "recoloured" if was.color != now.color else "changed"


def _labels(before: Doc, after: Doc) -> list[str]:
    old = {lab.id: lab for lab in before.labels}
    new = {lab.id: lab for lab in after.labels}
    parts = [f"added label “{lab.name}”" for i, lab in new.items() if i not in old]
    parts += [f"removed label “{lab.name}”" for i, lab in old.items() if i not in new]
    for label_id, lab in new.items():
        was = old.get(label_id)
        if was is not None and was.name != lab.name:
            parts.append(f"renamed label “{was.name}” to “{lab.name}”")
        elif was is not None and was.color != lab.color:
            parts.append(f"recoloured label “{lab.name}”")
    return parts


def _work_in_progress(before: Doc, after: Doc) -> list[str]:
    """The prompt, the candidates and proposals: what changes before anything is accepted."""
    if after.image is not None and before.image is not after.image:
        return [f"opened {after.image.name}"]
    if before.proposals is not after.proposals:
        if before.proposals is None and after.proposals is not None:
            return [f"found {len(after.proposals.items)} proposal(s)"]
        if before.proposals is not None and after.proposals is None:
            return [f"discarded {len(before.proposals.items)} proposal(s)"]
        return ["the proposals' review"]
    if before.editing != after.editing and after.editing is not None:
        return [f"started editing object #{after.editing}"]
    if after.prompt.empty and not before.prompt.empty:
        return ["cleared the prompt"]
    if len(after.prompt.points) > len(before.prompt.points):
        x, y, label = after.prompt.points[-1]
        return [f"{'click' if label else 'background click'} at ({x}, {y})"]
    if after.prompt.box != before.prompt.box and after.prompt.box is not None:
        return ["box"]
    old, new = before.candidates, after.candidates
    # A touched-up mask has no decoder logits (ui/actions.py touch_up).
    if new is not None and new.logits is None and (old is None or old.mask is not new.mask):
        return [f"{_stroke(old.mask if old else None, new.mask)} on the current mask"]
    if old is not None and new is not None and old.selected != new.selected:
        return [f"chose candidate {new.selected + 1}"]
    return []


def _stroke(before: Mask | None, after: Mask) -> str:
    """A brush only adds pixels, an eraser only removes them."""
    return "brush stroke" if after.area > (before.area if before else 0) else "eraser stroke"
