"""The page's own failure kinds; the event wrapper (``ui/events.py``) shows their text.

Each is a :class:`sam.errors.SamError` whose message says what to do. Clicks and boxes on the
image raise the engine's :class:`~sam.errors.PromptError`; exports raise
:class:`~sam.errors.ExportError`.
"""

from __future__ import annotations

from sam.errors import SamError


class LabelError(SamError, ValueError):
    """A label cannot be added, renamed, chosen or removed as asked."""


class ObjectError(SamError, ValueError):
    """The object asked for is not there (deleted meanwhile, e.g. in another tab)."""


class MaskImportError(SamError, ValueError):
    """Imported masks do not fit what is open (no image, another size, no mask for it)."""


class ProposalError(SamError, ValueError):
    """A review action on proposals that are not on show, or not accepted yet."""


class StrokeError(SamError, ValueError):
    """A brush or eraser stroke that cannot be applied (nothing to paint on, bad input)."""


class TrainingError(SamError, ValueError):
    """Training cannot start or stop as asked (a run is going, too few annotated images)."""
