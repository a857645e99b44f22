"""The Gradio Blocks of the annotation app, built by :func:`build_demo`."""

from __future__ import annotations

import atexit
import functools
import inspect
import logging
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gradio as gr

from sam.automatic import AutoMaskConfig
from sam.text_prompt import DEFAULT_DETECTOR, TextPromptConfig

from . import browser_decode
from .endpoint import brush_endpoint, predict_endpoint
from .handlers import Handlers, Updates
from .handlers.proposals import FAMILY_SETTINGS
from .html import text
from .lanes import SessionLanes, in_session_lane
from .models import MODEL_CHOICES, ModelManager
from .project import Project
from .proposals import TextDetectors
from .training_panel import training_panel

logger = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent.parent / "static"
EXAMPLES = STATIC / "examples"
MODES = ("Positive", "Negative")

SHORTCUTS = """
<div class="sam-keys">
<b>Mouse</b>: left click = object point · right click or <kbd>Shift</kbd>+click = background point ·
drag = box (combines with points)<br>
<kbd>Enter</kbd> accept · <kbd>Esc</kbd> clear prompts / cancel edit ·
<kbd>Ctrl</kbd>+<kbd>Z</kbd> undo · <kbd>Ctrl</kbd>+<kbd>Shift</kbd>+<kbd>Z</kbd> (or
<kbd>Ctrl</kbd>+<kbd>Y</kbd>) redo<br>
<kbd>N</kbd> toggle positive/negative · <kbd>C</kbd> next candidate · <kbd>H</kbd> show only
current mask · <kbd>1</kbd>–<kbd>9</kbd> choose label<br>
<kbd>B</kbd> brush · <kbd>E</kbd> eraser: drag to paint the current mask (or the selected
object); the same key or <kbd>Esc</kbd> goes back to clicks · <kbd>[</kbd> / <kbd>]</kbd>
smaller / larger<br>
<b>Zoom</b>: wheel or pinch (around the pointer) · <kbd>Space</kbd>+drag or middle-drag pans ·
<kbd>0</kbd> fit · <kbd>Shift</kbd>+<kbd>1</kbd> 100 % (one image pixel per screen pixel)
</div>
"""
# New images and projects start with an "object" and a "background" label; the second is easily
# taken for what a negative click does, so the labels panel says what each is for.
BACKGROUND_HINT = (
    '<div class="sam-hint">“background” is a label (a class you export), not a negative click: '
    "to tell the model a spot is <i>not</i> the object, right-click or "
    "<kbd>Shift</kbd>+click it.</div>"
)
PROJECT_SHORTCUTS = """
<div class="sam-keys">
<b>Folder</b>: <kbd>.</kbd> or <kbd>PageDown</kbd> next image · <kbd>,</kbd> or
<kbd>PageUp</kbd> previous image · <kbd>D</kbd> <b>Done &amp; next</b>: marks done and opens
the next image not done · <kbd>Shift</kbd>+<kbd>D</kbd> mark done / reopen only. Every change
is saved at once.
</div>
"""
FILTER_CHOICES = [
    ("All", "all"),
    ("Not started", "not_started"),
    ("In progress", "in_progress"),
    ("Done", "done"),
]
# The Settings start at the engine's own defaults (min area excepted: the app cleans up specks
# by default, the engine leaves masks as decoded).
AUTO = AutoMaskConfig()
TEXT = TextPromptConfig()
EXPORT_FORMATS = [("COCO JSON", "coco"), ("YOLO seg", "yolo"), ("PNG maps", "png")]
# Gradio keeps a copy of every upload and every file an event returns (API masks, exports) in
# its cache: every 10 minutes, copies older than an hour are deleted (a download link in the
# page lasts that long), and all of them when the server stops.
GRADIO_CACHE_CLEANUP = (600, 3600)
# Quick edits (clicks, accept, undo, labels, ...) of all sessions that may run at once: each
# session's own run one at a time regardless (ui/lanes.py); a session's waiting edits hold a
# place too, so there is room for several busy users.
QUICK_CONCURRENCY = 8


def _read(name: str) -> str:
    return (STATIC / name).read_text(encoding="utf-8")


def launch_options() -> dict[str, Any]:
    """Arguments for ``demo.launch()`` (Gradio 6 takes theme and CSS there)."""
    return {
        "css": _read("app.css"),
        "theme": gr.themes.Soft(primary_hue="blue"),
    }


def example_images() -> list[Path]:
    return sorted(EXAMPLES.glob("*.jpg")) if EXAMPLES.is_dir() else []


def build_demo(
    manager: ModelManager,
    media_dir: Path | None = None,
    examples: list[Path] | None = None,
    project: Project | None = None,
    text_detector: str | None = None,
) -> gr.Blocks:
    """Build the app. ``manager`` loads models; everything per user lives in ``gr.State``.

    With a ``project`` (an image folder), a gallery column lists its images and every edit is
    saved to the project's store; uploads and examples are left out. ``text_detector`` is the
    Grounding DINO of Find objects (hub repo id or local folder; default
    ``sam.text_prompt.DEFAULT_DETECTOR``), loaded on first use.
    """
    if media_dir is None:
        media_dir = Path(tempfile.mkdtemp(prefix="sam-annotator-media-"))
        atexit.register(shutil.rmtree, media_dir, ignore_errors=True)
    export_dir = Path(tempfile.mkdtemp(prefix="sam-annotator-export-"))
    # The photos the stage shows are served from here (named by content hash).
    gr.set_static_paths(
        [
            str(media_dir),
            *([str(project.thumbs_dir)] if project else []),
            # The browser's click decoder: its worker and ONNX Runtime Web (ui/browser_decode).
            str(browser_decode.WORKER),
            str(browser_decode.VENDOR),
        ]
    )
    examples = example_images() if examples is None else examples
    if project is not None:
        examples = []
    detectors = TextDetectors(text_detector or DEFAULT_DETECTOR, device=manager.device)
    h = Handlers(manager, media_dir, export_dir, examples, project, detectors)
    atexit.register(h.cleanup)
    lists_js = _read("lists.js")

    with gr.Blocks(title="SAM Annotator", delete_cache=GRADIO_CACHE_CLEANUP) as demo:
        demo.sam_handlers = h  # type: ignore[attr-defined]  # for tests and embedding
        state = gr.State(None)
        timer = gr.Timer(1.0, active=False)
        with gr.Row(equal_height=True):
            gr.HTML(
                "<h1>SAM Annotator</h1><p>Click an object, pick the best of three masks, "
                "label it, export PNGs.</p>"
                if project is None
                else f"<h1>SAM Annotator</h1><p>Folder <b>{text(project.name)}</b>"
                " — every change is saved at once.</p>",
                elem_id="sam-header",
                js_on_load=None,
            )
            model_status = gr.HTML("", elem_id="sam-model-status", js_on_load=None)

        # On a laptop screen each column scrolls on its own (static/app.css), so the image stays
        # in sight while the gallery or the panels on the right are scrolled.
        with gr.Row(elem_id="sam-main"):
            project_parts: dict[str, Any] = {}
            if project is not None:
                with gr.Column(scale=1, min_width=250, elem_id="sam-project"):
                    project_parts["progress"] = gr.HTML("", elem_id="sam-progress", js_on_load=None)
                    with gr.Row(elem_id="sam-nav"):
                        prev_btn = gr.Button("◀ Prev", elem_id="sam-prev", size="sm", min_width=0)
                        project_parts["done_btn"] = gr.Button(
                            "✓ Done (Shift+D)", elem_id="sam-done", size="sm",
                            variant="primary", min_width=0, scale=2,
                        )  # fmt: skip
                        next_btn = gr.Button("Next ▶", elem_id="sam-next", size="sm", min_width=0)
                    done_next_btn = gr.Button(
                        "✓ Done & next (D) ▶", elem_id="sam-done-next", size="sm", min_width=0
                    )
                    project_parts["prefetch"] = gr.HTML("", elem_id="sam-prefetch", js_on_load=None)
                    status_filter = gr.Radio(
                        FILTER_CHOICES, value="all", show_label=False, container=False,
                        elem_id="sam-filter",
                    )  # fmt: skip
                    project_parts["gallery"] = gr.HTML(
                        "", elem_id="sam-gallery", js_on_load=lists_js, apply_default_css=False
                    )
            with gr.Column(scale=3, min_width=480, elem_id="sam-work"):
                with gr.Row(elem_id="sam-toolbar"):
                    mode = gr.Radio(
                        [
                            ("Positive", MODES[0]),
                            ("Negative", MODES[1]),
                        ],
                        value=MODES[0],
                        show_label=False,
                        container=False,
                        elem_id="sam-mode",
                        scale=2,
                        min_width=220,
                    )
                    undo_btn = gr.Button("↶ Undo", elem_id="sam-undo", size="sm", scale=1)
                    redo_btn = gr.Button("↷ Redo", elem_id="sam-redo", size="sm", scale=1)
                    clear_btn = gr.Button("Clear (Esc)", elem_id="sam-clear", size="sm", scale=1)
                    accept_btn = gr.Button(
                        "✓ Accept (Enter)",
                        elem_id="sam-accept",
                        variant="primary",
                        size="sm",
                        scale=2,
                    )
                stage = gr.HTML(
                    "",
                    elem_id="sam-stage",
                    js_on_load=_read("stage.js"),
                    apply_default_css=False,
                )
                message = gr.HTML("", elem_id="sam-message", js_on_load=None)
                cands = gr.HTML(
                    "", elem_id="sam-cands", js_on_load=lists_js, apply_default_css=False
                )
                with gr.Row():
                    opacity = gr.Slider(
                        0.0, 1.0, value=0.5, step=0.05, label="Mask opacity", elem_id="sam-opacity"
                    )
                    only_current = gr.Checkbox(
                        label="Show only the current mask (H)", elem_id="sam-only"
                    )

            with gr.Column(scale=2, min_width=340, elem_id="sam-side"):
                upload = gr.File(
                    label="Upload image (or drop it on the canvas)",
                    file_types=["image"],
                    type="filepath",
                    elem_id="sam-upload",
                    height=110,
                    visible=project is None,
                )
                example_gallery = gr.Gallery(
                    value=[str(p) for p in examples],
                    label="Examples (click to open)",
                    columns=4,
                    height=110,
                    allow_preview=False,
                    elem_id="sam-examples",
                    visible=bool(examples),
                )
                auto = _proposal_controls(lists_js)
                with gr.Group():
                    gr.Markdown("**Labels** — new objects get the highlighted one", padding=True)
                    gr.HTML(BACKGROUND_HINT, elem_id="sam-label-hint", js_on_load=None)
                    labels = gr.HTML(
                        "", elem_id="sam-labels", js_on_load=lists_js, apply_default_css=False
                    )
                    with gr.Row():
                        label_name = gr.Textbox(
                            label="Label name", elem_id="sam-label-name", scale=3, max_lines=1
                        )
                        label_color = gr.ColorPicker(
                            label="Colour", elem_id="sam-label-color", scale=1, min_width=70
                        )
                    with gr.Row():
                        add_label_btn = gr.Button("+ Add label", size="sm", elem_id="sam-add-label")
                        save_label_btn = gr.Button(
                            "Rename / recolour", size="sm", elem_id="sam-save-label"
                        )
                        remove_label_btn = gr.Button(
                            "Remove", size="sm", elem_id="sam-remove-label", variant="stop"
                        )
                with gr.Group():
                    gr.Markdown(
                        "**Objects** — click a row to select; ◉ hide · ✎ re-edit · ✕ delete",
                        padding=True,
                    )
                    objects = gr.HTML(
                        "", elem_id="sam-objects", js_on_load=lists_js, apply_default_css=False
                    )
                    with gr.Column(visible=False) as obj_panel:
                        obj_title = gr.Markdown("", padding=True)
                        with gr.Row():
                            obj_label = gr.Dropdown(
                                [],
                                label="Label (type a new name to rename)",
                                allow_custom_value=True,
                                elem_id="sam-obj-label",
                                scale=3,
                            )
                            obj_color = gr.ColorPicker(
                                label="Colour", elem_id="sam-obj-color", scale=1, min_width=70
                            )
                with gr.Group():
                    gr.Markdown(
                        "**Export** — original resolution, lossless PNG. *Mask PNG*: the current "
                        "mask, else the selected object.",
                        padding=True,
                    )
                    with gr.Row():
                        export_zip_btn = gr.Button(
                            "⬇ Export all (zip)" if project is None else "⬇ This image (zip)",
                            variant="primary",
                            elem_id="sam-export-zip",
                        )
                        export_mask_btn = gr.Button("Mask PNG", elem_id="sam-export-mask")
                    if project is not None:
                        export_format = gr.Radio(
                            EXPORT_FORMATS, value="coco", show_label=False, container=False,
                            elem_id="sam-export-format",
                        )  # fmt: skip
                        export_project_btn = gr.Button(
                            "⬇ Export project (zip)", elem_id="sam-export-project", size="sm"
                        )
                    export_files = gr.File(
                        label="Downloads", file_count="multiple", elem_id="sam-downloads",
                        interactive=False, visible=False,
                    )  # fmt: skip
                with gr.Accordion("Import masks", open=False, elem_id="sam-import-box"):
                    import_file = gr.File(
                        label="PNG mask (binary or instance map) or COCO JSON"
                        + (" (its other images go to the project)" if project else ""),
                        file_types=[".png", ".json"],
                        type="filepath",
                        elem_id="sam-import",
                        height=90,
                    )
                with gr.Accordion("Model", open=False, elem_id="sam-model-box") as model_box:
                    model_choice = gr.Dropdown(
                        [label for label, _ in MODEL_CHOICES],
                        value=None,
                        label="Model: pick one, or type a hub repo id / local path",
                        allow_custom_value=True,
                        elem_id="sam-model-choice",
                    )
                    model_btn = gr.Button("Load model", elem_id="sam-model-load", size="sm")
                # Fine-tuning on the folder's own annotations (ui/training_panel.py).
                training = training_panel(project, manager) if project is not None else None
                with gr.Accordion("Keyboard & mouse", open=True):
                    gr.HTML(SHORTCUTS + (PROJECT_SHORTCUTS if project else ""), js_on_load=None)

        outputs: dict[str, gr.components.Component | gr.Column] = {
            "state": state,
            "stage": stage,
            "cands": cands,
            "objects": objects,
            "labels": labels,
            "message": message,
            "model_status": model_status,
            "model_box": model_box,
            "label_name": label_name,
            "label_color": label_color,
            "obj_panel": obj_panel,
            "obj_title": obj_title,
            "obj_label": obj_label,
            "obj_color": obj_color,
            "export_files": export_files,
            "timer": timer,
            **{name: auto[name] for name in PROPOSAL_OUTPUTS},
            **project_parts,
        }
        out_list = list(outputs.values())

        def wire(fn: Callable[..., Any]) -> Callable[..., Any]:
            """Map a handler's ``{name: value}`` result onto components."""
            # functools.wraps keeps the signature, which is how Gradio finds `gr.EventData`.
            if inspect.isgeneratorfunction(fn):

                @functools.wraps(fn)
                def gen(*args: Any) -> Iterator[dict[Any, Any]]:
                    for updates in fn(*args):
                        yield _to_components(updates, outputs)

                return gen

            @functools.wraps(fn)
            def plain(*args: Any) -> dict[Any, Any]:
                return _to_components(fn(*args), outputs)

            return plain

        lanes = SessionLanes()
        demo.sam_lanes = lanes  # type: ignore[attr-defined]  # for tests

        def ordered(fn: Callable[..., Updates]) -> Callable[..., Any]:
            """A quick edit: ``wire`` plus a turn in its session's lane (``ui/lanes.py``)."""
            run = in_session_lane(fn, lanes)

            @functools.wraps(fn)
            async def edit(*args: Any) -> dict[Any, Any]:
                return _to_components(await run(*args), outputs)

            return edit

        # Progress is shown by the stage itself ("Encoding image… 2.1 s"); Gradio's spinners
        # would otherwise cover every output component of these events.
        private: dict[str, Any] = {
            "api_visibility": "private",
            "outputs": out_list,
            "show_progress": "hidden",
        }
        # Quick edits (wrapped by `ordered`) share one Gradio lane with room for several events
        # at once; each session's own edits still run one at a time, in order, so two quick
        # clicks of one tab always see each other's result (ui/lanes.py).
        quick = {
            **private,
            "concurrency_id": "edit",
            "concurrency_limit": QUICK_CONCURRENCY,
        }

        loaded = demo.load(wire(h.on_load), [state], **private)
        import_file.upload(ordered(h.on_import), [state, import_file], **quick)
        if project is not None:
            loaded.then(wire(h.on_resume), [state], **private)
            # Opening an image may encode for seconds: not in the quick queue of clicks.
            project_parts["gallery"].open(wire(h.on_gallery), [state], **private)
            next_btn.click(wire(h.on_next), [state], **private)
            prev_btn.click(wire(h.on_prev), [state], **private)
            project_parts["done_btn"].click(ordered(h.on_done), [state], **quick)
            done_next_btn.click(wire(h.on_done_next), [state], **private)
            status_filter.change(ordered(h.on_filter), [state, status_filter], **quick)
            export_project_btn.click(wire(h.on_export_project), [state, export_format], **private)
        timer.tick(wire(h.on_tick), [state], **private)
        stage.prompt(ordered(h.on_prompt), [state, mode], trigger_mode="multiple", **quick)
        stage.dropped(wire(h.on_dropped), [state], **private)
        stage.decoder(ordered(h.on_decoder), [state], **quick)
        cands.pick(ordered(h.on_pick), [state], **quick)
        labels.choose(ordered(h.on_choose_label), [state], **quick)
        objects.act(ordered(h.on_object), [state], **quick)
        accept_btn.click(ordered(h.on_accept), [state, auto["prop_label"]], **quick)
        # Segment everything / Find run for seconds: not in the quick queue of clicks.
        settings = [auto[k] for k in ("pps", "pred_iou", "stability", "min_area", "nms", "offset")]
        auto["everything_btn"].click(wire(h.on_everything), [state, *settings], **private)
        find_inputs = [state, auto["find_text"], auto["box_thr"], auto["text_thr"]]
        auto["find_btn"].click(wire(h.on_find), find_inputs, **private)
        auto["find_text"].submit(wire(h.on_find), find_inputs, **private)
        auto["proposals"].toggle(ordered(h.on_proposal), [state], **quick)
        auto["accept_above_btn"].click(
            ordered(h.on_accept_above), [state, auto["prop_threshold"]], **quick
        )
        auto["reject_all_btn"].click(ordered(h.on_reject_all), [state], **quick)
        auto["add_accepted_btn"].click(
            ordered(h.on_add_accepted), [state, auto["prop_label"]], **quick
        )
        auto["discard_btn"].click(ordered(h.on_discard), [state], **quick)
        clear_btn.click(ordered(h.on_clear), [state], **quick)
        undo_btn.click(ordered(h.on_undo), [state], trigger_mode="multiple", **quick)
        redo_btn.click(ordered(h.on_redo), [state], trigger_mode="multiple", **quick)
        mode.change(ordered(h.on_mode), [state, mode], **quick)
        opacity.release(ordered(h.on_view), [state, opacity, only_current], **quick)
        only_current.input(ordered(h.on_view), [state, opacity, only_current], **quick)
        upload.upload(wire(h.on_upload), [state, upload], **private)
        example_gallery.select(wire(h.on_example), [state], **private)
        add_label_btn.click(ordered(h.on_add_label), [state, label_name, label_color], **quick)
        label_name.submit(ordered(h.on_add_label), [state, label_name, label_color], **quick)
        save_label_btn.click(ordered(h.on_save_label), [state, label_name, label_color], **quick)
        remove_label_btn.click(ordered(h.on_remove_label), [state], **quick)
        obj_label.input(ordered(h.on_object_label), [state, obj_label], **quick)
        obj_color.input(
            ordered(h.on_object_color), [state, obj_color], trigger_mode="always_last", **quick
        )
        export_zip_btn.click(wire(h.on_export_zip), [state], **private)
        export_mask_btn.click(wire(h.on_export_mask), [state], **private)
        family_inputs = [auto[name] for name in FAMILY_SETTINGS]
        model_btn.click(wire(h.on_model_change), [state, model_choice, *family_inputs], **private)
        if training is not None:
            training.wire(
                demo, state, model_choice, wire(h.on_model_change), family_inputs, private
            )

        # The HTTP API: an endpoint of its own (no page components), typed by ui/endpoint.py.
        gr.api(
            predict_endpoint(h.api_predict),
            api_name="predict",
            api_description=(
                "Segment an image. points: JSON [[x, y, label], ...] (label 1 = object, "
                "0 = background; at most 64 points), box: JSON [x0, y0, x1, y1] or empty, "
                "multimask: true for three candidates for one click. Returns the best mask "
                'as a PNG (0/255, image size) and {"scores": [...], "size": [H, W]}.'
            ),
        )
        gr.api(
            brush_endpoint(h.api_brush),
            api_name="brush",
            api_description=(
                "Paint or erase one stroke on a mask image (non-black pixels are the mask, e.g. "
                'predict\'s PNG). stroke: JSON {"mode": "brush" or "erase", "points": [[x, y], '
                '...] (at most 4096, image pixels), "radius": r (image pixels)}. Returns the '
                'painted mask as a PNG (0/255) and {"area": ..., "changed": ..., "size": [H, W]}.'
            ),
        )
    return demo


PROPOSAL_OUTPUTS = (
    "proposals", "proposal_panel", "prop_label", "prop_threshold", "find_note", *FAMILY_SETTINGS
)  # fmt: skip


def _setting(
    minimum: float, maximum: float, value: float, step: float, label: str, elem_id: str
) -> gr.Slider:
    """One slider of the Segment everything / Find objects settings."""
    return gr.Slider(minimum, maximum, value=value, step=step, label=label, elem_id=elem_id)


def _proposal_controls(lists_js: str) -> dict[str, Any]:
    """Segment everything, Find objects, their settings, and the proposal review panel."""
    c: dict[str, Any] = {}
    with gr.Group(elem_id="sam-auto-box"):
        gr.Markdown(
            "**Segment everything · Find objects** — masks proposed for the whole image",
            padding=True,
        )
        with gr.Row(elem_id="sam-auto-row"):
            c["everything_btn"] = gr.Button(
                "Segment everything", elem_id="sam-everything", size="sm", scale=2
            )
            c["find_text"] = gr.Textbox(
                placeholder="e.g. dog. cat.", show_label=False, container=False,
                max_lines=1, elem_id="sam-find-text", scale=2, min_width=120,
            )  # fmt: skip
            c["find_btn"] = gr.Button("Find", elem_id="sam-find", size="sm", scale=1)
        c["find_note"] = gr.HTML("", elem_id="sam-find-note", js_on_load=None)
        with gr.Accordion("Settings", open=False, elem_id="sam-auto-settings"):
            with gr.Row():
                c["pps"] = _setting(4, 64, AUTO.points_per_side, 1, "Points per side", "sam-pps")
                c["min_area"] = gr.Number(
                    100, precision=0, minimum=0, label="Min region area (px)",
                    elem_id="sam-min-area",
                )  # fmt: skip
                c["nms"] = _setting(0.05, 1, AUTO.box_nms_thresh, 0.05, "Box NMS IoU", "sam-nms")
            with gr.Row():
                c["pred_iou"] = _setting(
                    0, 1, AUTO.pred_iou_thresh, 0.01, "Predicted IoU ≥", "sam-pred-iou"
                )
                c["stability"] = _setting(
                    0, 1, AUTO.stability_score_thresh, 0.01, "Stability ≥", "sam-stability"
                )
                c["offset"] = _setting(
                    0, 2, AUTO.stability_score_offset, 0.01, "Stability offset", "sam-offset"
                )
            with gr.Row():
                c["box_thr"] = _setting(
                    0, 1, TEXT.box_threshold, 0.01, "Find: box threshold", "sam-box-thr"
                )
                c["text_thr"] = _setting(
                    0, 1, TEXT.text_threshold, 0.01, "Find: text threshold", "sam-text-thr"
                )
    with gr.Column(visible=False, elem_id="sam-proposal-panel") as panel:
        c["proposal_panel"] = panel
        c["proposals"] = gr.HTML(
            "", elem_id="sam-proposals", js_on_load=lists_js, apply_default_css=False
        )
        with gr.Row(equal_height=True):
            c["prop_threshold"] = gr.Slider(
                0, 1, value=0.95, step=0.01, label="Score threshold",
                elem_id="sam-prop-threshold", scale=3,
            )  # fmt: skip
            with gr.Column(scale=2, min_width=120):
                c["accept_above_btn"] = gr.Button(
                    "Accept all above", elem_id="sam-accept-above", size="sm"
                )
                c["reject_all_btn"] = gr.Button("Reject all", elem_id="sam-reject-all", size="sm")
        c["prop_label"] = gr.Dropdown(
            [], label="Accepted become (pick a label or type a new one)",
            allow_custom_value=True, elem_id="sam-prop-label",
        )  # fmt: skip
        with gr.Row():
            c["add_accepted_btn"] = gr.Button(
                "✓ Add accepted as objects (Enter)", variant="primary",
                elem_id="sam-add-accepted", size="sm", scale=3,
            )  # fmt: skip
            c["discard_btn"] = gr.Button(
                "Discard (Esc)", variant="stop", elem_id="sam-discard", size="sm", scale=2
            )
    return c


def _to_components(updates: Updates, outputs: dict[str, Any]) -> dict[Any, Any]:
    """A handler's ``{name: value}`` as ``{component: value}``; a name the page has no output
    for is a bug (a typo, or a part this page leaves out), so it raises rather than vanish."""
    unknown = sorted(set(updates) - set(outputs))
    if unknown:
        raise LookupError(
            f"No page output named {', '.join(map(repr, unknown))}; the page has "
            f"{', '.join(sorted(outputs))}."
        )
    return {outputs[name]: value for name, value in updates.items()}
