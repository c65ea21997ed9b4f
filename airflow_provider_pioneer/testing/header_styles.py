"""The rate-limit fields the emulator sends: Pioneer's ``X-RateLimit-*`` or the IETF draft's.

Pioneer's pages name ``X-RateLimit-Limit/-Remaining/-Reset``; a gateway in front of it (or
another server of its API) may follow draft-ietf-httpapi-ratelimit-headers instead, whose
fields changed between drafts. Each style turns the limiter's ``X-RateLimit-*`` into one of them,
so a test can check that the pacing reads what such a server sends.
"""

from __future__ import annotations

__all__ = ["HEADER_STYLES", "restyle"]

#: ``x-ratelimit``: Pioneer's. ``ietf-split``: drafts 00-05 (``RateLimit-Limit/-Remaining/-Reset``).
#: ``ietf-dictionary``: draft 06 (``RateLimit: limit=, remaining=, reset=``). ``ietf-named``:
#: drafts 07 on (``RateLimit-Policy: "default";q=;w=`` and ``RateLimit: "default";r=;t=``).
HEADER_STYLES = ("x-ratelimit", "ietf-split", "ietf-dictionary", "ietf-named")


def restyle(headers: dict[str, str], style: str, window_s: float) -> dict[str, str]:
    """``headers`` (a limiter's ``X-RateLimit-*``) in ``style``; other fields pass unchanged.

    :param window_s: the limiter's window (a bucket: 60, its limit being per minute), for the
        policy fields of the IETF styles.
    """
    if style == "x-ratelimit" or "X-RateLimit-Remaining" not in headers:
        return headers
    rest = {name: value for name, value in headers.items() if not name.startswith("X-RateLimit-")}
    limit = headers.get("X-RateLimit-Limit", "").split(";")[0]
    remaining, reset = headers["X-RateLimit-Remaining"], headers["X-RateLimit-Reset"]
    window = f"{window_s:g}"
    if style == "ietf-split":
        return {**rest, "RateLimit-Limit": f"{limit}, {limit};w={window}", "RateLimit-Remaining": remaining,
                "RateLimit-Reset": reset}  # fmt: skip
    if style == "ietf-dictionary":
        return {**rest, "RateLimit": f"limit={limit}, remaining={remaining}, reset={reset}",
                "RateLimit-Policy": f"{limit};w={window}"}  # fmt: skip
    if style == "ietf-named":
        return {**rest, "RateLimit": f'"default";r={remaining};t={reset}',
                "RateLimit-Policy": f'"default";q={limit};w={window}'}  # fmt: skip
    raise ValueError(f"rate_limit_header_style must be one of {', '.join(HEADER_STYLES)}, not {style!r}")
