"""Where requests go: the base-URL policy (where the API key may be sent) and every route.

Every path the provider calls is listed here, once, as documented by Pioneer (API.md,
CHANGES-2026-08.md); a base path such as ``/v1`` comes from the base URL itself
(``https://api.example.com/v1``), never from a guessed route. Cheap to import (DAG files
import the hook).
"""

from __future__ import annotations

from typing import NamedTuple
from urllib.parse import quote, urlsplit

from airflow_provider_pioneer.exceptions import PioneerConfigurationError
from airflow_provider_pioneer.loopback import is_loopback

__all__ = [
    "CREATE_API_KEY",
    "CREATE_EVALUATION",
    "CREATE_TRAINING_JOB",
    "DATASET_PROCESS",
    "DATASET_UPLOAD_URL",
    "DATASET_VERSION",
    "DEFAULT_BASE_URL",
    "DELETE_API_KEY",
    "DEPLOY_CHECKPOINT",
    "EVALUATION",
    "INFERENCE",
    "INFERENCE_FEEDBACK",
    "LIST_API_KEYS",
    "LIST_MODELS",
    "LIST_TRAINING_JOBS",
    "STOP_TRAINING_JOB",
    "TRAINING_JOB",
    "TRAINING_JOB_CHECKPOINTS",
    "TRAINING_JOB_LOGS",
    "Route",
    "is_loopback",
    "normalize_host",
    "validate_base_url",
]

DEFAULT_BASE_URL = "https://api.pioneer.ai"


class Route(NamedTuple):
    """One API call: its method and its path below the base URL."""

    method: str
    path: str

    def __str__(self) -> str:
        return f"{self.method} {self.path}"

    def bind(self, **params: str) -> Route:
        """This route with its ``{name}`` placeholders filled, each value percent-encoded as one segment."""
        return Route(self.method, self.path.format(**{k: quote(str(v), safe="") for k, v in params.items()}))


INFERENCE = Route("POST", "/inference")
CREATE_API_KEY = Route("POST", "/create-api-key")
LIST_API_KEYS = Route("GET", "/list-api-keys")
DELETE_API_KEY = Route("DELETE", "/delete-api-key")
LIST_MODELS = Route("GET", "/v1/models")

# The model lifecycle (LIFECYCLE.md §2, §4, §6): Pioneer's /felix routes. (The Fastino rebrand moves
# training to /v1/training-jobs on api.fastino.ai and documents no evaluation routes there.)
DATASET_UPLOAD_URL = Route("POST", "/felix/datasets/upload/url")
DATASET_PROCESS = Route("POST", "/felix/datasets/upload/process")
DATASET_VERSION = Route("GET", "/felix/datasets/{name}/{version}")
CREATE_TRAINING_JOB = Route("POST", "/felix/training-jobs")
LIST_TRAINING_JOBS = Route("GET", "/felix/training-jobs")
TRAINING_JOB = Route("GET", "/felix/training-jobs/{job_id}")
TRAINING_JOB_LOGS = Route("GET", "/felix/training-jobs/{job_id}/logs")
STOP_TRAINING_JOB = Route("POST", "/felix/training-jobs/{job_id}/stop")
TRAINING_JOB_CHECKPOINTS = Route("GET", "/felix/training-jobs/{job_id}/checkpoints")
DEPLOY_CHECKPOINT = Route("POST", "/felix/training-jobs/{job_id}/checkpoints/{checkpoint_id}/deploy")
CREATE_EVALUATION = Route("POST", "/felix/evaluations")
EVALUATION = Route("GET", "/felix/evaluations/{evaluation_id}")
INFERENCE_FEEDBACK = Route("POST", "/inferences/{inference_id}/feedback")


def _host_of(netloc: str) -> str:
    """The host of ``host[:port]`` / ``[v6]:port`` (no URL parsing: no scheme yet)."""
    if netloc.startswith("["):
        return netloc[1 : netloc.find("]")] if "]" in netloc else netloc
    return netloc.rsplit(":", 1)[0] if netloc.count(":") == 1 else netloc


def normalize_host(host: str, scheme_hint: str | None = None) -> str:
    """A connection's host field as a base URL: a scheme-less host is ``https://`` (``http://`` for loopback).

    :param host: ``https://api.pioneer.ai``, ``api.pioneer.ai``, ``localhost:8090``, ``[::1]:8090``...
    :param scheme_hint: the connection's schema field (``http``/``https``) for a scheme-less host.
    """
    host = host.strip()
    if "://" in host:
        return host
    scheme = (scheme_hint or "").lower()
    if scheme not in ("http", "https"):
        netloc = host.split("/", 1)[0]
        scheme = "http" if is_loopback(_host_of(netloc)) else "https"
    return f"{scheme}://{host}"


def _shown(url: str) -> str:
    """``url`` without anything before an ``@`` in its authority (it could be a key), for messages."""
    scheme, sep, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        authority = "***@" + authority.rsplit("@", 1)[1]
    return f"{scheme}{sep}{authority}{slash}{path}"[:200]


def validate_base_url(url: str, *, allow_insecure_http: bool = False, field: str = "host") -> str:
    """Check and normalise a base URL; plain ``http`` only for loopback unless explicitly allowed.

    :param url: the base URL (a scheme-less host is accepted, see :func:`normalize_host`).
    :param allow_insecure_http: allow ``http://`` to a non-loopback host.
    :param field: the connection field the URL came from, for the message.
    :raises PioneerConfigurationError: when the URL cannot be used safely.
    """
    url = normalize_host(url)
    shown = _shown(url)
    example = f"Set the connection's {field} to e.g. {DEFAULT_BASE_URL} (or http://127.0.0.1:8090 for the emulator)."
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError:
        raise PioneerConfigurationError(f"Pioneer base URL {shown!r} cannot be parsed. {example}") from None
    if parts.scheme not in ("http", "https") or not hostname:
        raise PioneerConfigurationError(f"Pioneer base URL {shown!r} is not an http(s) URL. {example}")
    if parts.username or parts.password or "@" in parts.netloc:
        raise PioneerConfigurationError(
            "Pioneer base URL must not carry credentials; put the API key in the connection's API key field."
        )
    if parts.query or parts.fragment or url.rstrip("/").endswith(("?", "#")):
        raise PioneerConfigurationError(
            f"Pioneer base URL {shown!r} has a query or fragment, which the API would not see. {example}"
        )
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise PioneerConfigurationError(f"Pioneer base URL {shown!r} contains whitespace. {example}")
    if parts.scheme == "http" and not allow_insecure_http and not is_loopback(hostname):
        raise PioneerConfigurationError(
            f"Refusing to send the API key over plain http to {hostname}: use https://, "
            "or set the connection extra allow_insecure_http to true if that host is trusted."
        )
    return url.rstrip("/")
