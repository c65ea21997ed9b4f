"""The emulator's admin API, described once: :class:`AdminCall` and the two sides it drives.

An admin call (``/_emulator/...``) is one :class:`AdminCall` in ``admin_calls.py``: the name of
its :class:`~airflow_provider_pioneer.testing.EmulatorControl` method, its HTTP verb and path, its
parameters (a dataclass whose fields carry their types and defaults, or a function), what the
server does with them on the :class:`~airflow_provider_pioneer.testing.state.EmulatorState`,
how the client reads the answer, and the method's docstring. From it:

* the server: ``app.py`` serves every call of ``ADMIN_CALLS`` (:func:`serve` builds the answer);
* the client: :func:`client_method` turns a call into an ``EmulatorControl`` method whose
  signature *is* the parameters' (``typing.ParamSpec``), so mypy checks every caller of
  ``inject(...)``, ``set_credits(...)``... against the dataclass fields, and ``inspect.signature``
  and ``help()`` show them.

Why a typed registry and not generated code: the methods must stay visible to mypy, so the client
class names each call once (``inject = client_method(INJECT)``) and nothing is made at run time
that mypy cannot see; a parameter (a new fault's, say) is then one field of its dataclass, and
``tests/integration/test_emulator_admin.py`` fails when a call and the client's methods disagree.

Kept import-light (no FastAPI): the client side loads it in every test process.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, Protocol, TypeVar

if TYPE_CHECKING:
    from airflow_provider_pioneer.testing.state import EmulatorState

__all__ = [
    "ADMIN_PREFIX",
    "AdminCall",
    "AdminClient",
    "NoParams",
    "body_of",
    "client_method",
    "fields_of",
    "json_object",
    "keyword_settings",
    "no_answer",
    "on_state",
    "serve",
]

ADMIN_PREFIX = "/_emulator"

P = ParamSpec("P")
R = TypeVar("R")


class AdminClient(Protocol):
    """What a generated method needs of its client: one JSON call of the admin API."""

    def _call(self, method: str, path: str, json: Any = None) -> Any: ...


@dataclass(frozen=True)
class AdminCall(Generic[P, R]):
    """One call of the emulator's admin API, for both its route and its client method.

    :param name: the :class:`~airflow_provider_pioneer.testing.EmulatorControl` method.
    :param verb: the HTTP method.
    :param path: the route below ``/_emulator/``.
    :param params: builds the call's parameters from the method's arguments: a dataclass (its
        fields are the parameters) or a function returning the JSON body; the client method has
        exactly its signature, the route calls it with the request's JSON object.
    :param run: the server's side: ``run(state, parameters)`` does the call on the state and
        returns the JSON answer (None answers ``{"ok": true}``).
    :param decode: the client's side: the method's return value from the JSON answer.
    :param doc: the method's docstring.
    """

    name: str
    verb: str
    path: str
    params: Callable[P, Any]
    run: Callable[[EmulatorState, Any], Any]
    decode: Callable[[Any], R]
    doc: str


def body_of(parameters: Any) -> dict[str, Any] | None:
    """The JSON body of a call's parameters (None when it has none, as for a GET)."""
    if dataclasses.is_dataclass(parameters) and not isinstance(parameters, type):
        body = {f.name: getattr(parameters, f.name) for f in dataclasses.fields(parameters)}
    else:
        body = dict(parameters or {})
    return body or None


def fields_of(parameters: Any) -> dict[str, Any]:
    """The parameters as keyword arguments of the state method they go to."""
    return body_of(parameters) or {}


@dataclass
class NoParams:
    """The parameters of a call that takes none."""


def keyword_settings(**settings: Any) -> dict[str, Any]:
    """The parameters of a call that takes any keywords (``set_lifecycle(**settings)``)."""
    return settings


def no_answer(_: Any) -> None:
    """``decode`` of a call whose client method returns nothing."""
    return None


def json_object(doc: Any) -> dict[str, Any]:
    """``decode`` of a call whose client method returns the answer's object."""
    return dict(doc)


def on_state(method: Callable[..., Any]) -> Callable[[EmulatorState, Any], Any]:
    """``run`` of a call whose parameters are the keyword arguments of that state method."""

    def run(state: EmulatorState, params: Any) -> Any:
        return method(state, **fields_of(params))

    run.state_method = method  # type: ignore[attr-defined]  # the agreement test checks its signature
    return run


def serve(call: AdminCall[..., Any], state: EmulatorState, body: Any) -> Any:
    """The JSON answer of ``call`` to a request with JSON ``body`` (``{}`` when it had none).

    :raises TypeError: a body that is no object, or a parameter the call does not take.
    :raises ValueError, KeyError: what the state refuses; the route answers them all with 400.
    """
    if not isinstance(body, dict):
        raise TypeError(f"the admin call {call.path!r} takes a JSON object, not {type(body).__name__}")
    result = call.run(state, call.params(**body))
    return {"ok": True} if result is None else result


def client_method(call: AdminCall[P, R]) -> Callable[Concatenate[AdminClient, P], R]:
    """The ``EmulatorControl`` method of ``call``: its parameters' signature, sent as JSON."""

    def method(self: AdminClient, /, *args: P.args, **kwargs: P.kwargs) -> R:
        body = body_of(call.params(*args, **kwargs))  # binds and checks them, fills the defaults
        return call.decode(self._call(call.verb, call.path, body))

    params = inspect.signature(call.params).parameters.values()
    own = inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY)
    returns = inspect.signature(call.decode).return_annotation
    method.__signature__ = inspect.Signature([own, *params], return_annotation=returns)  # type: ignore[attr-defined]
    method.__name__ = call.name
    method.__qualname__ = f"EmulatorControl.{call.name}"
    method.__doc__ = inspect.cleandoc(call.doc)
    method.admin_call = call  # type: ignore[attr-defined]  # read by the registry's agreement test
    return method
