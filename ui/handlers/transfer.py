"""Masks in and out: Import masks, the page's exports and the HTTP API's ``predict``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr

from sam.dataset import imports
from sam.errors import ExportError, SamError

from .. import actions, api, export, outputs
from ..errors import MaskImportError
from ..events import Updates, event, unexpected_failure
from ..redact import without_paths
from ..state import Session
from .base import HandlerBase


class TransferHandlers(HandlerBase):
    """Import masks, exports and the HTTP API."""

    @event
    def on_import(self, session: Session, path: str | None) -> Updates:
        """Masks from a PNG (binary or instance map) or a COCO JSON become objects.

        The current image's masks go through the session (undoable, then stored); in a
        project, a COCO file's other images are written to the store directly.
        """
        if not path:
            return self.view(session)
        name = Path(path).name
        if name.lower().endswith(".json"):
            by_file = imports.masks_from_coco(path)
            current = self._current_file(session)
            mine = next((masks for f, masks in by_file.items() if self._same_file(f, current)), [])
            added = actions.add_objects(session, mine, "import") if mine else 0
            others = 0
            if self.project is not None:
                for file_name, masks in by_file.items():
                    target = self.project.match_path(file_name)
                    if target is not None and not self._same_file(target, current):
                        others += self.project.add_to_image(target, masks)
            if not added and not others:
                raise MaskImportError(f"{name} has no masks for the images open here.")
            note = f"Imported {added} object(s) from {name}"
            session.notify(note + (f", and {others} into other images." if others else "."))
        else:
            added = actions.add_objects(session, imports.masks_from_png(path), "import")
            session.notify(
                f"Imported {added} object(s) from {name}; ✎ re-edits one with clicks."
                if added
                else f"{name} contains no mask (all pixels are 0)."
            )
        return {**self.everything(session), **self.project_view(session)}

    def _current_file(self, session: Session) -> str | None:
        if session.link is not None:
            return session.link.path
        return session.doc.image.name if session.doc.image else None

    def _same_file(self, file_name: str, current: str | None) -> bool:
        """Whether a COCO ``file_name`` is the open image (by path in a project, else name)."""
        if current is None:
            return False
        if self.project is not None:
            return self.project.match_path(file_name) == current
        return Path(file_name).name == Path(current).name

    @event
    def on_export_project(self, session: Session, fmt: str | None) -> Updates:
        """The whole project as a COCO, YOLO or PNG dataset in one zip."""
        if self.project is None:
            raise ExportError("Project export needs a folder: start with --images DIR.")
        fmt = (fmt or "coco").lower()
        path, report = export.write_dataset_zip(self.project.store, fmt, self._export_folder())
        done, total = self.project.store.progress()
        note = f"Exported the project as {fmt.upper()} ({done} of {total} done): {path.name}"
        # Skipped images are named, and the message shows as a warning until they are fixed.
        skipped = report.summary()
        session.notify(f"{note}; {skipped}." if skipped else note, error=bool(skipped))
        return {**self.view(session), "export_files": gr.update(value=[str(path)], visible=True)}

    def _export_folder(self) -> Path:
        """A fresh folder for one export; older ones are pruned (``ui/outputs.py``)."""
        return outputs.fresh_folder(self.export_dir / "page")

    @event
    def on_export_zip(self, session: Session) -> Updates:
        doc = session.doc
        if doc.image is None:
            session.notify("Nothing to export: open an image first.", error=True)
            return self.view(session)
        folder = self._export_folder()
        path = export.write_zip(
            doc, folder / f"{export.stem(doc)}_annotations.zip", session.selected_object
        )
        session.notify(f"Exported {len(doc.objects)} object(s) to {path.name}.")
        return {**self.view(session), "export_files": gr.update(value=[str(path)], visible=True)}

    @event
    def on_export_mask(self, session: Session) -> Updates:
        doc = session.doc
        if export.current_mask(doc, session.selected_object) is None:
            session.notify(
                "No mask to export: draw one, or select an object in the list.", error=True
            )
            return self.view(session)
        folder = self._export_folder()
        path = export.write_mask_png(
            doc, folder / f"{export.stem(doc)}_mask.png", session.selected_object
        )
        session.notify(f"Exported {path.name} (0/255, {doc.image.size[1]}×{doc.image.size[0]}).")  # type: ignore[union-attr]
        return {**self.view(session), "export_files": gr.update(value=[str(path)], visible=True)}

    def api_predict(
        self, image: str | dict | None, points: str | None, box: str | None, multimask: bool
    ) -> tuple[str, dict[str, Any]]:
        """Segment from the API; errors reach the client as a readable ``gr.Error`` that names
        files by their base names only (the upload's temp path is the server's business).

        ``image`` is a path, or Gradio's file payload (``{"path": ...}``) as the endpoint
        receives it (``ui/endpoint.py``): no preprocessing copies the upload again.
        """
        return self._api_call(
            "API predict",
            lambda folder: api.run_predict(
                self.manager, _upload_path(image), points, box, multimask, folder
            ),
        )

    def api_brush(self, mask: str | dict | None, stroke: str | None) -> tuple[str, dict[str, Any]]:
        """One brush or eraser stroke on an uploaded mask (``api.run_brush``); errors reach
        the client as :meth:`api_predict`'s do."""
        return self._api_call(
            "API brush", lambda folder: api.run_brush(_upload_path(mask), stroke, folder)
        )

    def _api_call(
        self, what: str, work: Callable[[Path], tuple[str, dict[str, Any]]]
    ) -> tuple[str, dict[str, Any]]:
        """``work`` given a fresh folder of the app's bounded API folder; a ``SamError`` becomes
        its message without server paths, anything else "Something went wrong" with an id."""
        try:
            return work(outputs.fresh_folder(self.export_dir / "api"))
        except SamError as exc:
            raise gr.Error(without_paths(str(exc)), print_exception=False) from exc
        except Exception as exc:
            raise gr.Error(unexpected_failure(what), print_exception=False) from exc


def _upload_path(value: str | dict | None) -> str | None:
    """A path, or Gradio's file payload (``{"path": ...}``) as an endpoint receives it."""
    return value.get("path") if isinstance(value, dict) else value
