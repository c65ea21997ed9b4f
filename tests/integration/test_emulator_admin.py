"""The registry of the emulator's admin calls (``testing/admin_calls.py``) and its two sides agree.

Every registered call is a method of ``EmulatorControl`` made from it and is served over HTTP;
every admin-looking method of ``EmulatorControl`` and every ``/_emulator/`` route is registered;
each call's parameters are ones its state method takes. A route, a client method or a parameter
added on one side only fails here.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import pytest
import requests

from airflow_provider_pioneer.testing import EmulatorControl, PioneerEmulator
from airflow_provider_pioneer.testing.admin import ADMIN_PREFIX
from airflow_provider_pioneer.testing.admin_calls import ADMIN_CALLS
from airflow_provider_pioneer.testing.faults import FaultSpec

# EmulatorControl's methods that are no admin call: the session, the health probe, a helper
# over alive_keys (api_key, api_key_name, api_profile are properties over the "info" call).
CLIENT_ONLY = {"close", "health", "wait_ready", "alive_key_names", "_call", "_info_value"}


def _client_methods() -> dict[str, Any]:
    return {
        name: value
        for name, value in vars(EmulatorControl).items()
        if inspect.isfunction(value) and not name.startswith("__")
    }


def test_every_registered_call_is_a_client_method_made_from_it() -> None:
    names = [call.name for call in ADMIN_CALLS]
    assert len(names) == len(set(names)), "two admin calls share a method name"
    methods = _client_methods()
    for call in ADMIN_CALLS:
        assert call.name in methods, f"admin call {call.path!r} has no EmulatorControl.{call.name}"
        assert getattr(methods[call.name], "admin_call", None) is call, (
            f"EmulatorControl.{call.name} is not client_method({call.name.upper()})"
        )


def test_every_client_method_is_a_registered_call() -> None:
    registered = {call.name for call in ADMIN_CALLS}
    unregistered = set(_client_methods()) - registered - CLIENT_ONLY
    assert not unregistered, f"EmulatorControl methods with no admin call in admin_calls.py: {unregistered}"


def test_every_admin_route_is_a_registered_call() -> None:
    from airflow_provider_pioneer.testing.app import create_app
    from airflow_provider_pioneer.testing.state import EmulatorState

    served = {
        (verb, route.path.removeprefix(f"{ADMIN_PREFIX}/"))
        for route in create_app(EmulatorState()).routes
        if getattr(route, "path", "").startswith(f"{ADMIN_PREFIX}/")
        for verb in getattr(route, "methods", ())
    }
    assert served == {(call.verb, call.path) for call in ADMIN_CALLS}


def test_each_call_takes_what_its_state_method_takes() -> None:
    checked = 0
    for call in ADMIN_CALLS:
        method = getattr(call.run, "state_method", None)
        if method is None:  # an adapter written out in the entry: the HTTP test below runs it
            continue
        params = inspect.signature(call.params).parameters
        inspect.signature(method).bind(None, **dict.fromkeys(params))  # TypeError names the odd one
        checked += 1
    assert checked >= 10


def test_the_client_signatures_are_their_parameters() -> None:
    inject = inspect.signature(EmulatorControl.inject)
    fields = [f.name for f in dataclasses.fields(FaultSpec)]
    assert list(inject.parameters) == ["self", *fields]
    assert inject.parameters["path"].default == "/inference"
    rate_limit = inspect.signature(EmulatorControl.set_rate_limit).parameters
    assert rate_limit["model"].kind is inspect.Parameter.KEYWORD_ONLY
    assert '"lose_response"' in (EmulatorControl.inject.__doc__ or "")  # FaultSpec's description


def test_every_registered_call_is_served_over_http(pioneer_emulator: PioneerEmulator) -> None:
    """Each call's route answers (a 400 for a missing parameter counts: the route is there)."""
    for call in ADMIN_CALLS:
        resp = requests.request(
            call.verb, f"{pioneer_emulator.url}{ADMIN_PREFIX}/{call.path}", json={}, timeout=10
        )
        assert resp.status_code in (200, 400), f"{call.verb} {call.path}: {resp.status_code}"
        assert resp.json(), f"{call.verb} {call.path} answered nothing"  # {"detail": ...} on a 400
    with pytest.raises(ValueError, match="unexpected keyword argument 'stauts'"):
        pioneer_emulator._call("POST", "faults", {"stauts": 503})
