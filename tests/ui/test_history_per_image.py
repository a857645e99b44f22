"""A project image's undo history survives moving to other images and back (within the tab),
is brought up to date with what other tabs wrote meanwhile, and the histories kept are bounded
in bytes (``ui.state.HistoryShelf``)."""

from __future__ import annotations

import numpy as np
from project_app import add_object, start

from ui.state import AnnotatedObject, Doc, HistoryShelf, Mask, ProjectLink, ShelvedHistory


def test_undo_history_survives_next_and_back(app):
    s, _ = start(app)
    assert s.link.path == "dog.jpg"
    add_object(app, s, 300, 200)
    app.prompt(s, {"kind": "point", "x": 100, "y": 80})  # work in progress, not accepted
    steps, doc = len(s.undo_stack), s.doc
    list(app.on_next(s))
    assert s.link.path == "dogs.jpg" and not s.undo_stack  # its own, empty history
    add_object(app, s, 50, 50)
    list(app.on_prev(s))
    assert s.link.path == "dog.jpg"
    assert len(s.undo_stack) == steps and f"{steps} step(s) to undo" in s.message
    assert s.doc.objects == doc.objects and s.doc.prompt == doc.prompt
    assert s.doc.candidates is not None  # the click's candidates are back too
    out = app.on_undo(s)
    assert "click at (100, 80)" in out["message"]
    app.on_undo(s)  # un-accept the object: the store follows
    assert not s.doc.objects and not app.project.store.objects(s.link.image_id)
    list(app.on_done_next(s))  # Done & next skips to the next not done: dogs.jpg
    assert s.link.path == "dogs.jpg" and len(s.doc.objects) == 1
    app.on_undo(s)  # dogs.jpg's own history came back with it
    assert not s.doc.objects and not app.project.store.objects(s.link.image_id)


def test_history_restarts_when_another_tab_changed_the_image_meanwhile(app):
    a, _ = start(app)
    add_object(app, a, 300, 200)
    list(app.on_next(a))
    b, _ = start(app)  # a second tab on dog.jpg deletes the object
    app.object_action(b, 1, "delete")
    list(app.on_prev(a))
    assert a.link.path == "dog.jpg"
    assert not a.doc.objects and not a.undo_stack  # the store is the truth


def test_shelved_histories_are_bounded_oldest_image_first(app):
    s, _ = start(app)
    add_object(app, s, 300, 200)  # dog.jpg: a history with candidates' logits
    list(app.on_next(s))
    one = s.shelf.entries[1].nbytes()
    assert one > 0
    add_object(app, s, 50, 50)
    s.shelf.budget_bytes = one + one // 2  # room for about one image's history
    list(app.on_next(s))  # leaves dogs.jpg: dog.jpg's history, the oldest, goes
    assert list(s.shelf.entries) == [2]
    list(app.on_gallery(s, _Evt(1)))
    assert s.link.path == "dog.jpg" and not s.undo_stack and len(s.doc.objects) == 1


class _Evt:
    def __init__(self, image_id: int) -> None:
        self._data = {"id": image_id}


def _objects(n: int) -> tuple[AnnotatedObject, ...]:
    """``n`` objects, each with a 64×64 mask crop (512 bytes packed) and 256 KiB of logits."""
    return tuple(
        AnnotatedObject(i, 1, Mask.from_array(np.eye(64, dtype=bool)), 1.0,
                        logits=np.zeros((1, 256, 256), np.float32))
        for i in range(n)
    )  # fmt: skip


def test_one_history_over_the_budget_loses_its_oldest_steps():
    objects = _objects(5)
    docs = [Doc(objects=objects[:n]) for n in range(1, 6)]  # each step adds an object
    entry = ShelvedHistory("k", docs[-1], docs[:-1], [], ProjectLink(1, "a.jpg"))
    assert entry.nbytes() == 5 * (256 * 256 * 4 + 512)  # arrays the steps share count once
    shelf = HistoryShelf(budget_bytes=3 * 2**20 // 2)  # room for about 5 objects
    shelf.put(1, entry)
    assert [len(d.objects) for d in shelf.entries[1].undo_stack] == [1, 2, 3, 4]
    shelf.put(2, ShelvedHistory("k", Doc(objects=_objects(3)), [], [], ProjectLink(2, "b")))
    assert list(shelf.entries) == [2]  # 1 and 2 do not fit together: the older goes
    big = Doc(objects=_objects(3) + _objects(4))
    shelf.put(3, ShelvedHistory("k", big, [Doc()], [], ProjectLink(3, "c")))
    assert list(shelf.entries) == [2]  # too big alone, even without undo steps: not kept
    shelf.put(4, ShelvedHistory("k", Doc(objects=_objects(5)), [docs[0]], [], ProjectLink(4, "d")))
    assert list(shelf.entries) == [4] and not shelf.entries[4].undo_stack  # trimmed to fit
