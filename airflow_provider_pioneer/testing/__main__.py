"""CLI: ``python -m airflow_provider_pioneer.testing --port 8090`` serves the emulator until SIGINT/SIGTERM.

It prints two lines on stdout (``Pioneer emulator on <url>`` and ``Bootstrap API key: <key>``),
which the demo and :class:`PioneerEmulator` in subprocess mode read.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from airflow_provider_pioneer.testing.server import PioneerEmulator, is_loopback


def _optional_float(value: str) -> float | None:
    return None if value.lower() in ("none", "off", "") else float(value)


def _optional_int(value: str) -> int | None:
    return None if value.lower() in ("none", "off", "") else int(value)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m airflow_provider_pioneer.testing",
        description="Serve the Pioneer API emulator on loopback. 'none' disables optional limits.",
    )
    p.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8090, help="port (0 picks a free one; default 8090)")
    p.add_argument("--latency-ms", type=float, default=0.0, help="fixed wait per /inference call")
    p.add_argument("--per-text-latency-ms", type=float, default=0.0, help="extra wait per text")
    p.add_argument(
        "--rate-limit-per-minute", type=_optional_float, default=1200.0, help="per key, /inference"
    )
    p.add_argument("--rate-limit-burst", type=_optional_float, default=None, help="bucket size (1 s worth)")
    p.add_argument("--key-rate-limit-per-minute", type=_optional_float, default=None, help="key endpoints")
    p.add_argument("--credits", type=_optional_int, default=None, help="tokens of the default account")
    p.add_argument("--spend-cap-tokens", type=_optional_int, default=None, help="daily spend cap in tokens")
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
    emulator = PioneerEmulator(
        host=args.host,
        port=args.port,
        latency_ms=args.latency_ms,
        per_text_latency_ms=args.per_text_latency_ms,
        rate_limit_per_minute=args.rate_limit_per_minute,
        rate_limit_burst=args.rate_limit_burst,
        key_rate_limit_per_minute=args.key_rate_limit_per_minute,
        credits=args.credits,
        spend_cap_tokens=args.spend_cap_tokens,
        seed=args.seed,
        max_text_chars=args.max_text_chars,
        bootstrap_key=args.bootstrap_key,
    )
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
