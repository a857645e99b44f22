"""Gradio event handlers: decode the event, call an action, render the result.

Handlers return ``{output name: value}``; ``layout.py`` maps names to components (outputs left
out are not updated). They never raise into Gradio: each is wrapped once by
:func:`ui.events.event`, which turns errors into a message on the page (the session keeps its
work) and writes the project store after the action. Only the HTTP API raises ``gr.Error``,
which clients receive as an error message.

One module per area of the page, each a class on :class:`~ui.handlers.base.HandlerBase` (the
app's state and the outputs every action refreshes):

- ``models``: page load, the model's status, the Model picker;
- ``stage``: opening an image, prompts, candidates, accept, undo;
- ``objects``: labels and the object list;
- ``navigation``: a project's gallery, next / previous, status filter, Mark done;
- ``proposals``: Segment everything, Find objects and their review panel;
- ``transfer``: Import masks, the exports, the HTTP API.

:class:`Handlers` joins them: the one object the layout wires and tests call.
"""

from __future__ import annotations

from ..events import Updates
from .models import ModelHandlers
from .navigation import NavigationHandlers
from .objects import ObjectHandlers
from .proposals import ProposalHandlers
from .stage import StageHandlers
from .transfer import TransferHandlers

__all__ = ["Handlers", "Updates"]


class Handlers(
    ModelHandlers,
    StageHandlers,
    ObjectHandlers,
    NavigationHandlers,
    ProposalHandlers,
    TransferHandlers,
):
    """All event handlers of one app; per-user data only ever comes in through ``session``."""
