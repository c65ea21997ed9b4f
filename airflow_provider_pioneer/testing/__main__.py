"""CLI: ``python -m airflow_provider_pioneer.testing --port 8090`` serves the emulator until SIGINT/SIGTERM.

It prints two lines on stdout (``Pioneer emulator on <url>`` and ``Bootstrap API key: <key>``),
which the demo and :class:`PioneerEmulator` in subprocess mode read.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

from airflow_provider_pioneer.testing.header_styles import HEADER_STYLES
from airflow_provider_pioneer.testing.limiters import MODELS
from airflow_provider_pioneer.testing.profiles import API_PROFILES, DEFAULT_PROFILE
from airflow_provider_pioneer.testing.server import PioneerEmulator, is_loopback
from airflow_provider_pioneer.testing.state import DEFAULT


def _optional_float(value: str) -> float | None:
    return None if value.lower() in ("none", "off", "") else float(value)


def _optional_int(value: str) -> int | None:
    return None if value.lower() in ("none", "off", "") else int(value)


def _limit(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """A limit that may also be ``default`` (the API profile's documented value)."""

    def convert(value: str) -> Any:
        return DEFAULT if value.lower() == DEFAULT else parse(value)

    return convert


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m airflow_provider_pioneer.testing",
        description="Serve the Pioneer API emulator on loopback. 'none' disables optional limits.",
    )
    p.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8090, help="port (0 picks a free one; default 8090)")
    p.add_argument(
        "--api-profile",
        choices=sorted(API_PROFILES),
        default=DEFAULT_PROFILE,
        help="API generation: current (Aug 2026: 5,000 rpm per account, rate-limit headers, coded "
        "402/403, 425/409, Bearer) or legacy (June 2026: 1,200 rpm per key, 429 spend cap). Default current",
    )
    p.add_argument("--latency-ms", type=float, default=0.0, help="fixed wait per /inference call")
    p.add_argument("--per-text-latency-ms", type=float, default=0.0, help="extra wait per text")
    p.add_argument(
        "--rate-limit-per-minute",
        type=_limit(_optional_float),
        default=DEFAULT,
        help="/inference limit, per key (legacy) or account (current); default: the profile's",
    )
    p.add_argument(
        "--rate-limit-model", choices=MODELS, default=MODELS[0],
        help="the /inference limiter (default token_bucket; the others count per window)",
    )  # fmt: skip
    p.add_argument("--rate-limit-burst", type=_optional_float, default=None, help="bucket size (1 s worth)")
    p.add_argument(
        "--rate-limit-window-seconds", type=float, default=60.0, help="window of the window models"
    )
    p.add_argument(
        "--rate-limit-window-in-limit", action="store_true", help="send X-RateLimit-Limit: N;w=<window>"
    )
    p.add_argument(
        "--rate-limit-header-style", choices=HEADER_STYLES, default=HEADER_STYLES[0],
        help="X-RateLimit-* (Pioneer's) or the IETF draft's RateLimit fields of a draft's version",
    )  # fmt: skip
    headers = p.add_mutually_exclusive_group()
    headers.add_argument(
        "--rate-limit-headers", dest="rate_limit_headers", action="store_true", default=None,
        help="send X-RateLimit-Limit/-Remaining/-Reset (default: current profile only)",
    )  # fmt: skip
    headers.add_argument(
        "--no-rate-limit-headers", dest="rate_limit_headers", action="store_false",
        help="hide the X-RateLimit-* headers (pace from Retry-After only)",
    )  # fmt: skip
    p.add_argument("--key-rate-limit-per-minute", type=_optional_float, default=None, help="key endpoints")
    p.add_argument(
        "--create-key-limit-per-hour",
        type=_limit(_optional_int),
        default=DEFAULT,
        help="POST /create-api-key calls per account and hour (default: the profile's, 50 / none)",
    )
    p.add_argument("--credits", type=_optional_int, default=None, help="tokens of the default account")
    p.add_argument(
        "--credits-code",
        default="out_of_credits",
        choices=["out_of_credits", "direct_model_requires_credits"],
        help="code of the current profile's 402",
    )
    p.add_argument(
        "--spend-cap-tokens", type=_optional_int, default=None, help="legacy: daily spend cap (429)"
    )
    p.add_argument(
        "--credit-ceiling-tokens",
        type=_optional_int,
        default=None,
        help="current: monthly credit ceiling (403)",
    )
    p.add_argument(
        "--credit-ceiling-code",
        default="credit_ceiling_reached",
        choices=["credit_ceiling_reached", "card_required"],
        help="code of the current profile's 403",
    )
    p.add_argument(
        "--warmup-seconds",
        type=float,
        default=0.0,
        help="current: 425 for this long after a model's first use",
    )
    p.add_argument(
        "--unservable-model",
        action="append",
        default=[],
        metavar="MODEL_ID",
        help="current: answer 409 for it",
    )
    p.add_argument("--max-body-bytes", type=_optional_int, default=None, help="larger request bodies get 413")
    p.add_argument("--max-body-response", choices=["html", "json"], default="html", help="body of that 413")
    p.add_argument("--seed", type=int, default=0, help="seed of fault rates")
    p.add_argument("--max-text-chars", type=int, default=10_000, help="longer texts get 422")
    p.add_argument("--bootstrap-key", default=None, help="fix the bootstrap key value (e.g. for a demo)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not is_loopback(args.host):
        print(
            f"error: refusing to bind {args.host!r}: the emulator only listens on loopback", file=sys.stderr
        )
        return 2
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    # The server runs in a thread, so uvicorn installs no signal handlers and we exit 0 on our own.
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        emulator = PioneerEmulator(
            host=args.host,
            port=args.port,
            api_profile=args.api_profile,
            latency_ms=args.latency_ms,
            per_text_latency_ms=args.per_text_latency_ms,
            rate_limit_per_minute=args.rate_limit_per_minute,
            rate_limit_model=args.rate_limit_model,
            rate_limit_burst=args.rate_limit_burst,
            rate_limit_window_seconds=args.rate_limit_window_seconds,
            rate_limit_window_in_limit=args.rate_limit_window_in_limit,
            rate_limit_header_style=args.rate_limit_header_style,
            rate_limit_headers=args.rate_limit_headers,
            key_rate_limit_per_minute=args.key_rate_limit_per_minute,
            create_key_limit_per_hour=args.create_key_limit_per_hour,
            credits=args.credits,
            credits_code=args.credits_code,
            spend_cap_tokens=args.spend_cap_tokens,
            credit_ceiling_tokens=args.credit_ceiling_tokens,
            credit_ceiling_code=args.credit_ceiling_code,
            warmup_seconds=args.warmup_seconds,
            unservable_models=args.unservable_model,
            max_body_bytes=args.max_body_bytes,
            max_body_response=args.max_body_response,
            seed=args.seed,
            max_text_chars=args.max_text_chars,
            bootstrap_key=args.bootstrap_key,
        )
    except ValueError as exc:  # settings that do not fit the profile, e.g. a spend cap in "current"
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        emulator.start()
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    try:
        print(f"Pioneer emulator on {emulator.url}", flush=True)
        print(f"Bootstrap API key: {emulator.api_key}", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
