"""The emulator's limiter models over real HTTP: set at start (through the CLI of a subprocess
emulator) and at run time (through the admin API), with their headers and ``Retry-After``."""

from __future__ import annotations

import pytest
import requests

from airflow_provider_pioneer.testing import BASE_MODELS, PioneerEmulator


def infer(emu: PioneerEmulator) -> requests.Response:
    body = {"model_id": BASE_MODELS[0], "text": "Acme", "schema": {"entities": ["organization"]}}
    return requests.post(f"{emu.url}/inference", headers={"X-API-Key": emu.api_key}, json=body, timeout=10)


def limit_headers(resp: requests.Response) -> tuple[str, str, str]:
    h = resp.headers
    return h["X-RateLimit-Limit"], h["X-RateLimit-Remaining"], h["X-RateLimit-Reset"]


def test_limiter_models_at_start_and_at_run_time() -> None:
    with PioneerEmulator(
        subprocess=True, rate_limit_per_minute=60, rate_limit_model="moving_window",
        rate_limit_window_seconds=30, rate_limit_window_in_limit=True,
    ) as emu:  # fmt: skip
        # A sliding log of 30 per 30 s: 30 at once, then the next only when the first leaves it.
        answers = [infer(emu) for _ in range(31)]
        assert [r.status_code for r in answers] == [200] * 30 + [429]
        assert limit_headers(answers[0]) == ("30;w=30", "29", "30")
        assert limit_headers(answers[29])[:2] == ("30;w=30", "0")
        refused = answers[30]
        # Retry-After: whole seconds until the oldest request leaves the window, as Reset says.
        assert 25 <= int(refused.headers["Retry-After"]) <= 30
        assert refused.headers["Retry-After"] == refused.headers["X-RateLimit-Reset"]
        assert refused.json()["code"] == "rate_limited"

        emu.set_rate_limit(60, model="fixed_window", window_seconds=2, window_in_limit=False)
        answers = [infer(emu) for _ in range(3)]  # "2 per 2 s", in the bare form most servers send
        assert [r.status_code for r in answers] == [200, 200, 429]
        assert limit_headers(answers[0]) == ("2", "1", "2")
        assert answers[2].headers["Retry-After"] in ("1", "2")  # the window's end, opened at the first

        with pytest.raises(
            ValueError, match="use one of token_bucket, fixed_window, moving_window, sliding_window"
        ):
            emu.set_rate_limit(60, model="leaky_bucket")
        with pytest.raises(ValueError, match="burst applies to the token_bucket model only"):
            emu.set_rate_limit(60, burst=2)
        emu.set_rate_limit(60, burst=2, model="token_bucket")  # the default model, as before
        answers = [infer(emu) for _ in range(3)]
        assert [r.status_code for r in answers] == [200, 200, 429]
        assert limit_headers(answers[0]) == ("60", "1", "1")
