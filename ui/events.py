"""``@event``: the one wrapper of every Gradio event handler of the page.

A handler is written for a ready :class:`~ui.state.Session` and returns (or, for a long task,
yields) ``{output name: value}``. The wrapper

- coerces the session (``gr.State`` holds ``None`` until the first event creates one);
- decodes the payload of a custom event from the page's JS (``trigger(name, data)``) once: a
  handler whose last parameter is ``payload`` gets a plain ``dict``, while Gradio sees
  ``evt: gr.EventData`` there and passes the event;
- turns every failure into a message in the page: ``SamError`` text as is, anything else as
  :func:`unexpected_failure` (logged under a short id); the session keeps its work;
- writes what the action changed to the project store (``Page.persist``) once it is done.

Apply it once per handler: a handler that shares work with another calls a plain method, not
the other's wrapped one (a second wrapper would persist twice).
"""

from __future__ import annotations

import functools
import inspect
import logging
import uuid
from collections.abc import Callable, Iterator
from typing import Any, Protocol, TypeVar

import gradio as gr

from sam.errors import SamError

from .state import Session

logger = logging.getLogger("ui.handlers")

Updates = dict[str, Any]
Payload = dict[str, Any]  # a custom event's data from the page's JS, e.g. {"index": 2}
PAYLOAD = "payload"  # the name of the parameter that gets the decoded payload

H = TypeVar("H", bound=Callable[..., Any])


class Page(Protocol):
    """What the handlers of every area provide: the page's outputs and the store's writes."""

    def view(self, session: Session, busy: str | None = None, job: str = "") -> Updates:
        """The outputs every action refreshes."""
        ...

    def persist(self, session: Session) -> Updates:
        """Write the session's changes to the project store; the outputs that follow."""
        ...


def event(fn: H | None = None, *, persist: bool = True) -> Any:
    """Wrap a handler ``fn(self, session, *inputs[, payload])`` (plain or generator) for Gradio.

    ``persist=False`` leaves the store alone (a poll that changes nothing).
    """
    if fn is None:
        return functools.partial(event, persist=persist)
    takes_payload = list(inspect.signature(fn).parameters)[-1] == PAYLOAD
    if inspect.isgeneratorfunction(fn):
        wrapper = _stream(fn, takes_payload, persist)
    else:
        wrapper = _call(fn, takes_payload, persist)
    if takes_payload:
        _show_event_data(wrapper, fn)
    return wrapper


def _call(fn: Callable[..., Updates], takes_payload: bool, persist: bool) -> Callable[..., Any]:
    @functools.wraps(fn)
    def call(self: Page, session: Session | None, *args: Any) -> Updates:
        session = _session(session)
        try:
            updates = fn(self, session, *_decoded(args, takes_payload))
            return {**updates, **(self.persist(session) if persist else {})}
        except SamError as exc:
            session.notify(str(exc), error=True)
        except Exception:
            session.notify(unexpected_failure(f"Handler {fn.__name__}"), error=True)
        return self.view(session)

    return call


def _stream(
    fn: Callable[..., Iterator[Updates]], takes_payload: bool, persist: bool
) -> Callable[..., Any]:
    @functools.wraps(fn)
    def stream(self: Page, session: Session | None, *args: Any) -> Iterator[Updates]:
        session = _session(session)
        try:
            yield from fn(self, session, *_decoded(args, takes_payload))
            saved = self.persist(session) if persist else {}
        except SamError as exc:
            session.notify(str(exc), error=True)
        except Exception:
            session.notify(unexpected_failure(f"Handler {fn.__name__}"), error=True)
        else:
            if saved:
                yield saved
            return
        yield self.view(session)

    return stream


def _session(session: Session | None) -> Session:
    return session if isinstance(session, Session) else Session()


def _decoded(args: tuple[Any, ...], takes_payload: bool) -> tuple[Any, ...]:
    """The inputs with the event (last) replaced by its payload as a plain dict."""
    if not takes_payload:
        return args
    evt = args[-1] if args else None
    data = getattr(evt, "_data", None)  # gr.EventData keeps the JS event's data there
    return (*args[:-1], dict(data) if isinstance(data, dict) else {})


class _Signature:
    """What ``inspect.signature`` finds behind a payload handler's wrapper (it follows
    ``__wrapped__``): the handler's parameters with ``payload`` shown as ``evt:
    gr.EventData``, which is how Gradio knows to pass the event. An object of its own, not
    the wrapper's ``__signature__``: ``functools.wraps`` of a bound handler (``ui/lanes.py``)
    would copy that one, ``self`` included."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        sig = inspect.signature(fn)
        *inputs, _ = sig.parameters.values()
        evt = inspect.Parameter(
            "evt", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=gr.EventData
        )
        self.__signature__ = sig.replace(parameters=[*inputs, evt])


def _show_event_data(wrapper: Any, fn: Callable[..., Any]) -> None:
    wrapper.__wrapped__ = _Signature(fn)
    # Gradio reads the hints with typing.get_type_hints: only objects here, no strings to
    # resolve in another module.
    wrapper.__annotations__ = {"evt": gr.EventData}


def unexpected_failure(what: str) -> str:
    """Log the exception being handled under a short id and return the message for the user.

    Call it inside an ``except`` block. The exception's text can hold server paths and Python
    internals, so only the log gets it; the id lets an operator find the entry.
    """
    error_id = uuid.uuid4().hex[:8]
    logger.exception("%s failed [error %s]", what, error_id)
    return (
        f"Something went wrong; your work is kept. The server log has the details "
        f"(error {error_id})."
    )
