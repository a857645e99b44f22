"""Proposals stored by ``python -m sam.autolabel`` open for review in the app: accepted ones
become objects, and the stored proposals are gone once accepted or discarded."""

from __future__ import annotations

import numpy as np
from project_app import js_event, start

from sam.image_io import load_image
from sam.masks import mask_to_rle


def store_proposals(app, path: str, source: str = "everything") -> list[np.ndarray]:
    """Two rectangles as autolabel writes them (best first); returns their masks."""
    store = app.project.store
    image_id = store.image_id(path)
    height, width = load_image(app.project.folder / path).shape[:2]
    masks = []
    for top in (20, 200):
        mask = np.zeros((height, width), dtype=bool)
        mask[top : top + 100, 50:250] = True
        masks.append(mask)
    label = store.ensure_label("dog").id if source == "text" else None
    rows = [
        (mask_to_rle(m), 0.9 - 0.1 * i, {"points": [[150, 70 + 180 * i, 1]], "box": None}, label)
        for i, m in enumerate(masks)
    ]
    store.add_proposals(image_id, source, rows)
    return masks


def test_stored_proposals_open_for_review_and_accepted_ones_become_objects(app):
    masks = store_proposals(app, "dog.jpg")
    s, updates = start(app)  # opens dog.jpg, the first image not done
    assert s.link.path == "dog.jpg"
    props = s.doc.proposals
    assert props is not None and props.source == "everything" and len(props.items) == 2
    np.testing.assert_array_equal(props.items[0].mask.to_array(), masks[0])
    assert props.items[1].prompt.points == ((150, 250, 1),)
    # The page says so when the image opens (before its encode's own message).
    assert any("2 auto-labelling proposal(s) await review" in str(u) for u in updates)

    app.on_proposal(s, js_event({"index": 1}))
    app.on_add_accepted(s, "object")
    store = app.project.store
    image_id = store.image_id("dog.jpg")
    objects = store.objects(image_id)
    assert [(o.source, o.reviewed) for o in objects] == [("everything", True)]
    np.testing.assert_array_equal(objects[0].mask(), masks[1])
    assert store.objects(image_id, reviewed=False) == []  # reviewed: no longer waiting

    s2, _ = start(app)  # another tab: the object, no proposals left to review
    assert s2.link.path == "dog.jpg" and s2.doc.proposals is None
    assert len(s2.doc.objects) == 1


def test_discarded_stored_proposals_are_removed(app):
    store_proposals(app, "dog.jpg", source="text")
    s, _ = start(app)
    props = s.doc.proposals
    assert props.source == "text" and {p.phrase for p in props.items} == {"dog"}
    app.on_discard(s)
    store = app.project.store
    image_id = store.image_id("dog.jpg")
    assert store.objects(image_id, reviewed=False) == [] and store.objects(image_id) == []
