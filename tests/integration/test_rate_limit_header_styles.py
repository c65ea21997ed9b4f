"""The pacing reads the budget in each style a server sends it: Pioneer's ``X-RateLimit-*`` and the
IETF draft's fields of every version (a gateway in front of Pioneer, another server of its API)."""

from __future__ import annotations

import pytest
import requests

from airflow_provider_pioneer.client import PioneerClient
from airflow_provider_pioneer.testing import PioneerEmulator
from airflow_provider_pioneer.testing.header_styles import HEADER_STYLES

MODEL = "fastino/gliner2-base-v1"
#: The fields each style sends, and none of the others'.
FIELDS = {
    "x-ratelimit": {"x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"},
    "ietf-split": {"ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"},
    "ietf-dictionary": {"ratelimit", "ratelimit-policy"},
    "ietf-named": {"ratelimit", "ratelimit-policy"},
}
ALL_FIELDS = set().union(*FIELDS.values())


@pytest.mark.parametrize("model", ["token_bucket", "fixed_window"])
@pytest.mark.parametrize("style", HEADER_STYLES)
def test_the_pace_comes_from_the_servers_budget_in_every_header_style(style: str, model: str) -> None:
    with PioneerEmulator(
        rate_limit_per_minute=1200, rate_limit_model=model, rate_limit_header_style=style
    ) as emu:
        answer = requests.post(
            f"{emu.url}/inference",
            headers={"X-API-Key": emu.api_key},
            json={"task": "extract_entities", "text": "Acme", "schema": ["organization"], "model_id": MODEL},
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        sent = {name.lower() for name in answer.headers} & ALL_FIELDS
        assert sent == FIELDS[style]
        client = PioneerClient(emu.url, emu.api_key, timeout=10)
        try:
            for _ in range(4):
                client.infer(["Acme hired Bo."], schema={"entities": ["organization"]}, model_id=MODEL)
            assert client.pacer.pace_source == "server headers"
            # 1,200/min, five requests spent: what is left over the time to the reset, never more
            # than the server's twice its rate (the cap of a budget that may be spent in a burst).
            rate = client.pacer.rate_per_minute
            assert rate is not None and 0 < rate <= 2 * 1200
        finally:
            client.close()
