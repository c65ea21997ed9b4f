"""API generations the emulator can speak: ``legacy`` (June 2026) and ``current`` (August 2026).

A profile holds only the facts that differ between the two generations of Pioneer's API
(see ``CHANGES-2026-08.md``); the state and the app ask the profile instead of testing names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["API_PROFILES", "DEFAULT_PROFILE", "RESOLUTION_URL", "ApiProfile", "get_profile"]

#: Where Pioneer's billing errors send the user (``resolution_url`` of 402 / 403 bodies).
RESOLUTION_URL = "https://agent.pioneer.ai/credits"


@dataclass(frozen=True)
class ApiProfile:
    """What one generation of Pioneer's API does.

    :param name: ``"legacy"`` or ``"current"``.
    :param inference_rpm: documented ``/inference`` limit in requests per minute.
    :param rate_limit_scope: who shares one ``/inference`` counter: each ``"key"`` or the whole ``"account"``.
    :param rate_limit_headers: whether ``/inference`` answers carry ``X-RateLimit-Limit/-Remaining/-Reset``.
    :param coded_errors: 429s carry ``code``/``scope`` (body and headers); billing errors are
        ``{code, message, resolution_url}`` bodies (402 credits, 403 monthly ceiling) instead of a
        ``detail`` string and a 429 daily spend cap.
    :param bearer: ``Authorization: Bearer <key>`` is accepted besides ``X-API-Key``.
    :param create_key_per_hour: limit of ``POST /create-api-key`` per account and hour (None: none).
    :param model_readiness: 425 warm-ups and 409 not-servable models exist.
    """

    name: Literal["legacy", "current"]
    inference_rpm: float
    rate_limit_scope: Literal["key", "account"]
    rate_limit_headers: bool
    coded_errors: bool
    bearer: bool
    create_key_per_hour: int | None
    model_readiness: bool


API_PROFILES: dict[str, ApiProfile] = {
    "legacy": ApiProfile(
        name="legacy", inference_rpm=1200, rate_limit_scope="key", rate_limit_headers=False,
        coded_errors=False, bearer=False, create_key_per_hour=None, model_readiness=False,
    ),
    "current": ApiProfile(
        name="current", inference_rpm=5000, rate_limit_scope="account", rate_limit_headers=True,
        coded_errors=True, bearer=True, create_key_per_hour=50, model_readiness=True,
    ),
}  # fmt: skip
DEFAULT_PROFILE = "current"


def get_profile(name: str) -> ApiProfile:
    """The profile called ``name``; a clear ``ValueError`` for anything else."""
    try:
        return API_PROFILES[name]
    except KeyError:
        raise ValueError(f"api_profile must be one of {sorted(API_PROFILES)}, not {name!r}") from None
