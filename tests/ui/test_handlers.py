"""Handler-level tests: what the browser's events do, checked against direct engine calls."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sam import SamPredictor
from sam.predictor import MAX_POINTS
from ui import actions
from ui.handlers import Handlers
from ui.state import Session

POINT = (500, 375)  # on the truck's door
NEG = (620, 300)
BOX = (75, 275, 1725, 850)


def click(h: Handlers, s: Session, x: int, y: int, negative: bool = False) -> dict[str, Any]:
    return h.prompt(s, {"kind": "point", "x": x, "y": y, "negative": negative})


def cand_masks(s: Session) -> list[np.ndarray]:
    assert s.doc.candidates is not None
    return [m.to_array() for m in s.doc.candidates.masks]


class SpyPredictor:
    """Records what the UI asks the engine, then forwards the call."""

    def __init__(self, inner: SamPredictor) -> None:
        self.inner = inner
        self.calls: list[dict[str, Any]] = []

    def set_image(self, image: np.ndarray, digest: str | None = None) -> None:
        self.inner.set_image(image, digest)

    def predict(self, **kwargs: Any):
        self.calls.append(kwargs)
        return self.inner.predict(**kwargs)


def test_first_click_gives_engine_candidates(handlers, opened, engine):
    updates = click(handlers, opened, *POINT)
    masks, scores, _ = engine.predict(
        point_coords=np.array([POINT]), point_labels=np.array([1]), multimask_output=True
    )
    got = cand_masks(opened)
    assert len(got) == 3
    for mine, theirs in zip(got, masks, strict=True):
        np.testing.assert_array_equal(mine, theirs)
    np.testing.assert_allclose(opened.doc.candidates.scores, scores, rtol=0, atol=1e-6)
    assert opened.doc.prompt.points == ((*POINT, 1),)
    assert "sam-overlay" in updates["stage"]
    assert updates["cands"].count('data-event="pick"') == 3
    assert not opened.message_is_error


def test_clicks_do_not_hash_the_image_again(handlers, opened, monkeypatch):
    """The page's image was hashed once when it opened; clicks reuse that digest as the
    engine's cache key (hashing an 1800x1200 photo costs 5-10 ms per click)."""
    import sam.predictor

    def no_hashing(array):
        raise AssertionError("the image was hashed again")

    monkeypatch.setattr(sam.predictor, "array_digest", no_hashing)
    click(handlers, opened, *POINT)
    click(handlers, opened, *NEG, negative=True)
    assert not opened.message_is_error, opened.message
    assert opened.doc.prompt.points == ((*POINT, 1), (*NEG, 0))
    assert opened.doc.candidates is not None and len(opened.doc.candidates.masks) == 1


def test_second_click_feeds_chosen_logits_back(handlers, opened, engine, manager):
    click(handlers, opened, *POINT)
    handlers.on_pick(opened, _evt({"index": 1}))
    chosen = np.array(opened.doc.candidates.logits[1:2])

    spy = SpyPredictor(manager.predictor())
    actions.add_point(opened, *NEG, positive=False, predictor=spy)  # type: ignore[arg-type]
    (call,) = spy.calls
    assert call["multimask_output"] is False
    np.testing.assert_array_equal(call["mask_input"], chosen)
    np.testing.assert_array_equal(call["point_coords"], [POINT, NEG])
    np.testing.assert_array_equal(call["point_labels"], [1, 0])

    masks, _, _ = engine.predict(
        point_coords=np.array([POINT, NEG]),
        point_labels=np.array([1, 0]),
        mask_input=chosen,
        multimask_output=False,
    )
    (mine,) = cand_masks(opened)
    np.testing.assert_array_equal(mine, masks[0])


def test_box_and_points_combine(handlers, opened, engine):
    handlers.prompt(opened, {"kind": "box", "box": list(BOX)})
    box_logits = np.array(opened.doc.candidates.logits[:1])
    masks, _, _ = engine.predict(box=np.array(BOX), multimask_output=False)
    np.testing.assert_array_equal(cand_masks(opened)[0], masks[0])

    click(handlers, opened, *NEG, negative=True)
    assert opened.doc.prompt.box == BOX
    masks, _, _ = engine.predict(
        point_coords=np.array([NEG]),
        point_labels=np.array([0]),
        box=np.array(BOX),
        mask_input=box_logits,
        multimask_output=False,
    )
    np.testing.assert_array_equal(cand_masks(opened)[0], masks[0])


def test_negative_mode_toggle_makes_left_clicks_negative(handlers, opened):
    handlers.prompt(opened, {"kind": "point", "x": 10, "y": 10, "negative": False}, "Negative")
    assert opened.doc.prompt.points == ((10, 10, 0),)


def test_pick_candidate_then_accept_stores_that_mask(handlers, opened, engine):
    click(handlers, opened, *POINT)
    masks, _, _ = engine.predict(
        point_coords=np.array([POINT]), point_labels=np.array([1]), multimask_output=True
    )
    handlers.on_pick(opened, _evt({"index": 2}))
    assert opened.doc.candidates.selected == 2
    handlers.on_accept(opened)
    (obj,) = opened.doc.objects
    np.testing.assert_array_equal(obj.mask.to_array(), masks[2])
    assert opened.doc.candidates is None and opened.doc.prompt.empty


def test_accept_with_labels_and_label_editing(handlers, opened):
    handlers.on_add_label(opened, "car", "#ff0000")
    assert opened.active_label == "car"
    click(handlers, opened, *POINT)
    handlers.on_accept(opened)
    handlers.on_choose_label(opened, _evt({"id": 1}))
    click(handlers, opened, 100, 1000)
    updates = handlers.on_accept(opened)
    assert [(o.id, opened.doc.label_name(o)) for o in opened.doc.objects] == [
        (1, "car"),
        (2, "object"),
    ]
    assert opened.doc.color_of(opened.doc.objects[0]) == "#ff0000"
    assert "#1 car" in updates["objects"] and "#2 object" in updates["objects"]

    # Rename the label: its objects follow. Relabel and recolour one object.
    handlers.on_choose_label(opened, _evt({"id": 3}))
    handlers.on_save_label(opened, "vehicle", "#00ff00")
    assert opened.doc.label_name(opened.doc.objects[0]) == "vehicle"
    handlers.object_action(opened, 2, "select")
    handlers.on_object_label(opened, "wheel")  # a new name becomes a new label
    handlers.on_object_color(opened, "rgba(1, 2, 3, 1)")
    assert opened.doc.label_name(opened.doc.objects[1]) == "wheel"
    assert opened.doc.label("wheel") is not None
    assert opened.doc.color_of(opened.doc.objects[1]) == "#010203"
    # A label in use cannot be removed; an unused one can.
    handlers.on_choose_label(opened, _evt({"id": 2}))
    handlers.on_remove_label(opened)
    assert opened.doc.label("background") is None
    handlers.on_choose_label(opened, _evt({"id": 3}))
    handlers.on_remove_label(opened)
    assert opened.message_is_error and "used by" in opened.message


def test_accept_without_mask_is_a_message(handlers, opened):
    handlers.on_accept(opened)
    assert opened.message_is_error
    assert opened.doc.objects == ()


def test_undo_redo_prompts_and_objects(handlers, opened):
    click(handlers, opened, *POINT)
    click(handlers, opened, *NEG, negative=True)
    handlers.on_accept(opened)
    assert len(opened.doc.objects) == 1
    handlers.on_undo(opened)  # the accept
    assert opened.doc.objects == () and len(opened.doc.prompt.points) == 2
    handlers.on_undo(opened)  # the negative click
    assert opened.doc.prompt.points == ((*POINT, 1),)
    assert len(opened.doc.candidates.masks) == 3
    handlers.on_redo(opened)
    handlers.on_redo(opened)
    assert len(opened.doc.objects) == 1 and opened.doc.prompt.empty
    handlers.on_redo(opened)
    assert opened.message == "Nothing to redo."
    # Object actions are undoable too.
    handlers.object_action(opened, 1, "hide")
    assert opened.doc.objects[0].hidden
    handlers.object_action(opened, 1, "delete")
    assert opened.doc.objects == ()
    handlers.on_undo(opened)
    handlers.on_undo(opened)
    assert len(opened.doc.objects) == 1 and not opened.doc.objects[0].hidden
    # A new action drops the redo branch.
    click(handlers, opened, *POINT)
    handlers.on_redo(opened)
    assert opened.message == "Nothing to redo."


def test_clear_prompts(handlers, opened):
    click(handlers, opened, *POINT)
    handlers.on_clear(opened)
    assert opened.doc.prompt.empty and opened.doc.candidates is None
    handlers.on_undo(opened)
    assert opened.doc.prompt.points == ((*POINT, 1),)


def test_re_edit_object_refines_from_its_logits(handlers, opened, engine):
    click(handlers, opened, *POINT)
    handlers.on_accept(opened)
    obj = opened.doc.objects[0]
    handlers.object_action(opened, obj.id, "edit")
    assert opened.doc.editing == obj.id and opened.doc.prompt == obj.prompt
    click(handlers, opened, *NEG, negative=True)
    masks, _, _ = engine.predict(
        point_coords=np.array([POINT, NEG]),
        point_labels=np.array([1, 0]),
        mask_input=obj.logits,
        multimask_output=False,
    )
    handlers.on_accept(opened)
    (edited,) = opened.doc.objects
    assert edited.id == obj.id
    np.testing.assert_array_equal(edited.mask.to_array(), masks[0])
    # Esc while re-editing cancels and leaves the object as it was.
    handlers.object_action(opened, obj.id, "edit")
    click(handlers, opened, 50, 50)
    handlers.on_clear(opened)
    assert opened.doc.editing is None
    np.testing.assert_array_equal(opened.doc.objects[0].mask.to_array(), masks[0])


def test_hide_and_only_current_change_the_overlay(handlers, opened):
    click(handlers, opened, *POINT)
    handlers.on_accept(opened)
    with_object = handlers.view(opened)["stage"]
    assert "sam-overlay" in with_object
    handlers.object_action(opened, 1, "hide")
    assert "sam-overlay" not in handlers.view(opened)["stage"]
    handlers.object_action(opened, 1, "hide")
    handlers.on_view(opened, 0.5, True)
    assert "sam-overlay" not in handlers.view(opened)["stage"]
    handlers.on_view(opened, 0.8, False)
    assert opened.view.opacity == 0.8


def test_bad_image_keeps_work(handlers, opened, tmp_path):
    click(handlers, opened, *POINT)
    handlers.on_accept(opened)
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"this is not a JPEG")
    updates = list(handlers.on_upload(opened, str(bad)))
    assert opened.message_is_error and "broken.jpg" in opened.message
    assert "Traceback" not in updates[-1]["message"]
    assert "sam-error" in updates[-1]["message"]
    assert len(opened.doc.objects) == 1 and opened.doc.image.name == "truck.jpg"


def test_click_outside_or_before_image_is_a_message(handlers, opened):
    click(handlers, opened, 5000, 5)
    assert opened.message_is_error and "outside" in opened.message
    fresh = Session()
    handlers.prompt(fresh, {"kind": "point", "x": 1, "y": 1})
    assert fresh.message_is_error


def test_the_65th_click_is_a_message_and_keeps_the_mask(handlers, opened):
    click(handlers, opened, *POINT)
    more = tuple((10 + i, 20 + i, 1) for i in range(MAX_POINTS - 1))
    points = (*opened.doc.prompt.points, *more)
    opened.commit(replace(opened.doc, prompt=replace(opened.doc.prompt, points=points)))
    shown = cand_masks(opened)
    updates = click(handlers, opened, *NEG, negative=True)
    assert opened.message_is_error
    assert "65 points is more than the limit of 64 per prompt" in opened.message
    assert "sam-error" in updates["message"] and "Traceback" not in updates["message"]
    assert opened.doc.prompt.points == points
    for kept, before in zip(cand_masks(opened), shown, strict=True):
        np.testing.assert_array_equal(kept, before)


def test_an_unreadable_upload_is_named_without_its_server_path(handlers, opened, tmp_path):
    upload = tmp_path / "gradio" / "0123abcd" / "empty.png"
    upload.parent.mkdir(parents=True)
    upload.write_bytes(b"")
    updates = list(handlers.on_upload(opened, str(upload)))
    assert opened.message_is_error and "empty.png" in opened.message
    assert "empty (0 bytes)" in opened.message
    assert "/" not in opened.message, opened.message
    assert str(tmp_path) not in updates[-1]["message"]
    assert opened.doc.image.name == "truck.jpg"


def test_an_unexpected_failure_shows_no_python_internals(handlers, opened, monkeypatch, caplog):
    def add_point(*args, **kwargs):
        raise RecursionError("maximum recursion depth exceeded in /srv/app/ui/actions.py")

    monkeypatch.setattr(actions, "add_point", add_point)
    click(handlers, opened, *POINT)
    assert opened.message_is_error
    assert opened.message.startswith("Something went wrong; your work is kept.")
    assert "Recursion" not in opened.message and "/srv" not in opened.message
    error_id = opened.message.rsplit("error ", 1)[1].rstrip(").")
    assert f"[error {error_id}]" in caplog.text and "RecursionError" in caplog.text


def test_stale_click_on_previous_image_is_ignored(handlers, opened):
    handlers.prompt(opened, {"kind": "point", "x": 1, "y": 1, "key": "other-image"})
    assert opened.message_is_error and opened.doc.prompt.empty


def test_new_image_then_undo_brings_back_previous_work(handlers, opened, example_photos):
    click(handlers, opened, *POINT)
    handlers.on_accept(opened)
    list(handlers.on_upload(opened, str(example_photos / "dog.jpg")))
    assert opened.doc.image.name == "dog.jpg" and opened.doc.objects == ()
    handlers.on_undo(opened)
    assert opened.doc.image.name == "truck.jpg" and len(opened.doc.objects) == 1


def test_two_sessions_do_not_interfere(handlers, truck_path, example_photos):
    a, b = Session(), Session()
    list(handlers.on_upload(a, str(truck_path)))
    list(handlers.on_upload(b, str(example_photos / "dog.jpg")))
    click(handlers, a, *POINT)
    handlers.on_accept(a)
    click(handlers, b, 100, 100)
    assert len(a.doc.objects) == 1 and b.doc.objects == ()
    assert a.doc.prompt.empty and b.doc.prompt.points == ((100, 100, 1),)
    handlers.on_undo(b)
    assert len(a.doc.objects) == 1
    handlers.on_add_label(a, "only-in-a", None)
    assert b.doc.label("only-in-a") is None
    assert a.doc.image.name == "truck.jpg" and b.doc.image.name == "dog.jpg"


def test_model_failure_is_explained(tmp_path: Path):
    from ui.models import ModelManager

    mgr = ModelManager(str(tmp_path / "missing.pth"))
    status = mgr.load()
    assert not status.ok and status.message
    h = Handlers(mgr, tmp_path / "m", tmp_path / "e", [])
    s = Session()
    page = h.on_load(s)
    assert "could not be loaded" in page["model_status"]
    assert "--model" in page["model_status"]
    assert page["model_box"]["open"] is True  # the box the message sends the user to
    # Opening an image still works; clicking says why nothing happens.
    list(h.on_upload(s, str(Path(__file__).parents[2] / "static" / "examples" / "dog.jpg")))
    assert s.doc.image is not None and s.message_is_error
    h.prompt(s, {"kind": "point", "x": 5, "y": 5})
    assert s.message_is_error and "No model is loaded" in s.message


def test_model_switch_in_page(handlers, opened, tiny_checkpoint, tmp_path):
    # A path outside the allowed places is refused before any loading (test_model_sources.py).
    updates = list(handlers.on_model_change(opened, str(tmp_path / "nope")))
    assert opened.message_is_error and len(updates) == 1
    updates = list(handlers.on_model_change(opened, str(tiny_checkpoint)))
    assert not opened.message_is_error and opened.model_source == str(tiny_checkpoint)
    assert "sam-ok" in updates[-1]["model_status"]
    assert "model_box" not in updates[-1]  # a box the user opened or closed stays so


class _Evt:
    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data


def _evt(data: dict[str, Any]) -> Any:
    return _Evt(data)


@pytest.mark.parametrize("action", ["select", "hide", "edit", "delete"])
def test_object_actions_on_missing_object_are_messages(handlers, opened, action):
    out = handlers.on_object(opened, _evt({"id": 99, "action": action}))
    assert "stage" in out
    assert opened.message_is_error and "#99" in opened.message


def test_example_gallery_opens_the_picked_photo(manager, tmp_path, example_photos):
    examples = [example_photos / "dog.jpg", example_photos / "truck.jpg"]
    h = Handlers(manager, tmp_path / "media", tmp_path / "export", examples)
    s = Session()
    evt = _evt({})
    evt.index = 1
    list(h.on_example(s, evt))
    assert s.doc.image is not None and s.doc.image.name == "truck.jpg"
    assert not s.message_is_error
