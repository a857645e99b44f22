"""Undo and redo say which step they took back or made again (ui/history.py)."""

from __future__ import annotations

import numpy as np

from ui.history import describe_step
from ui.state import AnnotatedObject, Doc, Mask


def test_undo_and_redo_name_the_step(handlers, opened):
    handlers.prompt(opened, {"kind": "point", "x": 500, "y": 375})
    handlers.on_accept(opened)
    handlers.on_undo(opened)
    assert opened.message == "Undone: added object #1."
    handlers.on_undo(opened)
    assert opened.message == "Undone: click at (500, 375)."
    handlers.on_redo(opened)
    assert opened.message == "Redone: click at (500, 375)."
    handlers.on_redo(opened)
    assert opened.message == "Redone: added object #1."

    handlers.object_action(opened, 1, "hide")
    handlers.on_undo(opened)
    assert opened.message == "Undone: hid object #1."
    handlers.object_action(opened, 1, "select")
    handlers.on_object_label(opened, "wheel")  # a new name: a new label
    handlers.on_undo(opened)
    assert opened.message == "Undone: relabelled object #1, added label “wheel”."
    handlers.on_save_label(opened, "car", "#ff0000")  # the active label, "object"
    handlers.on_undo(opened)
    assert opened.message == "Undone: renamed label “object” to “car”."
    handlers.object_action(opened, 1, "delete")
    handlers.on_undo(opened)
    assert opened.message == "Undone: deleted object #1."
    handlers.on_undo(opened)
    assert opened.message == "Undone: added object #1."


def test_many_objects_in_one_step_are_counted():
    mask = Mask.from_array(np.ones((4, 4), bool))
    objects = tuple(AnnotatedObject(id=i, label_id=1, mask=mask, score=1.0) for i in (1, 2, 3, 4))
    empty = Doc()
    assert describe_step(empty, Doc(objects=objects[:2])) == "added objects #1, #2"
    assert describe_step(empty, Doc(objects=objects)) == "added 4 objects"
    assert describe_step(Doc(objects=objects), empty) == "deleted 4 objects"
    assert describe_step(empty, empty) == "the last step"
