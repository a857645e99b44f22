"""Two tabs (one server) and two processes (two servers on one database) on the same project
image: the database is the truth, a stale edit never blocks later writes, and nothing a tab
shows as accepted is missing from the database."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from project_app import add_object, js_event, make_handlers, start

from ui.handlers import Handlers
from ui.state import Session


@pytest.fixture
def other_process(folder: Path, tiny_checkpoint: Path, tmp_path: Path):
    """A second app over the same folder: its own store connection, as a second server."""
    h = make_handlers(folder, tiny_checkpoint, tmp_path / "second")
    yield h
    h.project.close()


def rows(h: Handlers, s: Session) -> list:
    return h.project.store.objects(s.link.image_id)


def assert_tab_matches_store(h: Handlers, s: Session) -> None:
    """Every object the tab shows is in the store with the same mask, and nothing more."""
    stored = rows(h, s)
    assert len(stored) == len(s.doc.objects), s.message
    for rec, obj in zip(stored, s.doc.objects, strict=True):
        np.testing.assert_array_equal(rec.mask(), obj.mask.to_array())
        assert rec.hidden == obj.hidden


def test_edit_of_an_object_deleted_in_another_tab_does_not_block_later_work(app):
    """The reported sequence: A accepts #1, B opens the image, A deletes #1, B hides #1 and
    accepts two objects. Before, B's stale row made every later write fail silently."""
    a, _ = start(app)
    add_object(app, a, 300, 200)
    b, _ = start(app)
    assert [o.id for o in b.doc.objects] == [1]
    app.object_action(a, 1, "delete")
    assert rows(app, a) == []

    app.object_action(b, 1, "hide")  # stale: #1 is gone
    assert b.message_is_error
    assert "#1 was deleted in another tab" in b.message
    assert "not saved" in b.message
    assert b.doc.objects == ()  # the tab shows the project as saved
    assert not b.undo_stack  # an undo must not bring back a state another tab moved on from

    first = add_object(app, b, 300, 200)
    second = add_object(app, b, 600, 300)
    stored = rows(app, b)
    assert len(stored) == 2
    np.testing.assert_array_equal(stored[0].mask(), first)
    np.testing.assert_array_equal(stored[1].mask(), second)
    assert_tab_matches_store(app, b)
    out = list(app.on_next(b))  # navigation works
    assert b.link.path == "dogs.jpg", out[-1]


def test_a_tab_sees_what_another_tab_did_on_its_next_action(app):
    a, _ = start(app)
    add_object(app, a, 300, 200)
    b, _ = start(app)
    add_object(app, a, 600, 300)  # added in A after B opened
    app.object_action(a, 1, "hide")  # and #1 changed
    app.object_action(b, 1, "select")  # any action syncs
    assert "was changed in another tab" in b.message
    assert "1 object(s) were added in another tab" in b.message
    assert not b.message_is_error  # B lost nothing of its own
    assert [o.hidden for o in b.doc.objects] == [True, False]
    assert_tab_matches_store(app, b)


def test_edit_of_an_object_changed_in_another_tab_keeps_the_other_change(app):
    a, _ = start(app)
    add_object(app, a, 300, 200)
    b, _ = start(app)
    app.object_action(a, 1, "select")
    app.on_object_label(a, "dog")  # A relabels #1
    app.object_action(b, 1, "hide")  # B, not knowing, hides the old version
    assert b.message_is_error and "#1 was changed in another tab" in b.message
    (rec,) = rows(app, b)
    labels = {lab.id: lab.name for lab in app.project.store.labels()}
    assert labels[rec.label_id] == "dog" and not rec.hidden  # A's edit stands
    assert b.doc.label_name(b.doc.objects[0]) == "dog"  # B shows it
    app.object_action(b, 1, "hide")  # and B's next try works
    assert rows(app, b)[0].hidden and not b.message_is_error


def test_delete_of_an_object_changed_in_another_tab_keeps_it(app):
    a, _ = start(app)
    add_object(app, a, 300, 200)
    b, _ = start(app)
    app.object_action(a, 1, "hide")
    app.object_action(b, 1, "delete")
    assert b.message_is_error and "kept" in b.message
    assert len(rows(app, b)) == 1 and rows(app, b)[0].hidden
    assert_tab_matches_store(app, b)


def test_undo_after_another_tab_deleted_the_object_adds_no_ghost(app):
    a, _ = start(app)
    add_object(app, a, 300, 200)
    b, _ = start(app)
    add_object(app, b, 600, 300)  # B's own step, undoable
    app.object_action(a, 1, "delete")
    app.object_action(b, 2, "select")  # B learns of the deletion; history restarts
    app.on_undo(b)  # nothing to undo: B's accept must not be undone into a ghost of #1
    assert_tab_matches_store(app, b)
    assert len(rows(app, b)) == 1


def test_label_renamed_in_another_process_does_not_come_back(app, other_process):
    a, _ = start(app)
    b, _ = start(other_process)
    add_object(app, a, 300, 200)  # label "object"
    app.on_save_label(a, "vehicle", "#ff0000")  # A renames "object" -> "vehicle"
    # B still shows "object": it accepts an object with it, and recolours the other label.
    add_object(other_process, b, 600, 300)
    names = [lab.name for lab in other_process.project.store.labels()]
    assert "object" not in names and "vehicle" in names
    assert [b.doc.label_name(o) for o in b.doc.objects] == ["vehicle", "vehicle"]
    assert b.active_label == "vehicle"
    labels = {lab.id: lab.name for lab in app.project.store.labels()}
    assert [labels[r.label_id] for r in rows(app, a)] == ["vehicle", "vehicle"]
    b.active_label = "background"
    other_process.on_save_label(b, "background", "#00ff00")
    names = [lab.name for lab in app.project.store.labels()]
    assert sorted(names) == ["background", "vehicle"]
    assert_tab_matches_store(other_process, b)


def test_label_ids_are_stable_and_never_reused(app):
    s, _ = start(app)
    ids = {lab.name: lab.id for lab in app.project.store.labels()}
    app.on_add_label(s, "cat", "#112233")
    cat = next(lab for lab in s.doc.labels if lab.name == "cat")
    assert cat.id == max(ids.values()) + 1  # the store's id, in the tab too
    s.active_label = "cat"
    app.on_remove_label(s)
    app.on_add_label(s, "dog", "#445566")
    dog = next(lab for lab in s.doc.labels if lab.name == "dog")
    assert dog.id == cat.id + 1  # a deleted label's id is not handed out again
    app.on_undo(s)  # dog removed
    app.on_undo(s)  # cat back, under its own id
    stored = {lab.name: lab.id for lab in app.project.store.labels()}
    assert stored == {**ids, "cat": cat.id}
    assert {lab.name: lab.id for lab in s.doc.labels} == stored  # the others never renumbered


def test_a_label_chip_chooses_its_label_after_another_tab_changed_the_list(app):
    """Chips carry the label's id: when another tab's change reorders the list (here a label
    removed before it) while the tab's page still shows the old chips, a click must choose the
    label it shows, not the one that moved into its place."""
    a, _ = start(app)
    app.on_add_label(a, "cat", "#112233")
    app.on_add_label(a, "dog", "#445566")
    app.on_add_label(a, "emu", "#778899")
    b, _ = start(app)
    page = app.view(b)["labels"]  # what B's page shows
    chip = re.search(r'data-id="(\d+)" data-index="(\d+)" title="Label new objects as dog"', page)
    assert chip, page
    a.active_label = "cat"
    app.on_remove_label(a)  # "dog" moves up one place in every list
    app.on_view(b, 0.4, False)  # B syncs (its page's chips are redrawn a moment later)
    # B clicks the "dog" chip of the page it still shows; the payload is what lists.js sends
    # (the position too, which is what the page used to send).
    app.on_choose_label(b, js_event({"id": int(chip[1]), "index": int(chip[2])}))
    assert b.active_label == "dog", b.message


def test_label_renamed_in_another_tab_keeps_its_objects_and_the_tabs_choice(app):
    """Objects and the tab's chosen label refer to the label's id: when another tab renames
    it, they follow the new name; nothing falls back to another label or duplicates one."""
    a, _ = start(app)
    b, _ = start(app)
    app.on_add_label(b, "cat", "#112233")  # B labels new objects "cat"
    add_object(app, b, 300, 200)
    cat_id = b.active_label_id
    app.on_view(a, 0.4, False)  # A sees "cat"
    a.active_label = "cat"
    app.on_save_label(a, "feline", "#112233")
    add_object(app, b, 600, 300)  # B, still showing "cat", accepts one more with it
    assert b.active_label == "feline", b.message
    assert [b.doc.label_name(o) for o in b.doc.objects] == ["feline", "feline"]
    assert [r.label_id for r in rows(app, b)] == [cat_id, cat_id]
    names = [lab.name for lab in app.project.store.labels()]
    assert names == ["object", "background", "feline"]
    assert_tab_matches_store(app, b)
