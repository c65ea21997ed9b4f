"""The suite-wide leak guard itself must be able to fail, and the failure paths must not leak."""

from __future__ import annotations

import pytest

from airflow_provider_pioneer import exceptions as ex
from airflow_provider_pioneer.client import PioneerClient
from airflow_provider_pioneer.testing import PioneerEmulator

pytest_plugins = ["pytester"]


def test_guard_fails_a_test_that_prints_a_key(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        f"import sys; sys.path.insert(0, {str(__import__('pathlib').Path(__file__).parents[2])!r})\n"
        "from tests.conftest import _record_issued_keys, pytest_runtest_makereport  # noqa: F401\n"
    )
    pytester.makepyfile(
        """
        def test_prints(pioneer_emulator):
            print("debug:", pioneer_emulator.api_key)

        def test_quiet(pioneer_emulator):
            print("debug:", pioneer_emulator.url)
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*An API key issued by the emulator appeared in: Captured stdout call*"])
    assert "pio_sk_" not in result.stdout.str()


def test_failure_paths_keep_the_key_out_of_messages_reprs_and_logs(
    pioneer_emulator: PioneerEmulator, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    caplog.set_level(logging.DEBUG)  # urllib3 and our own debug logging included
    key = pioneer_emulator.api_key
    client = PioneerClient(pioneer_emulator.url, key, max_retries=1, sleep=lambda s: None)
    texts: list[str] = [repr(client)]
    for status in (400, 401, 402, 404, 422, 429, 500, 502, 503):
        pioneer_emulator.clear_faults()
        pioneer_emulator.inject(status=status, body={"detail": f"echo {key}"})
        with pytest.raises(ex.PioneerError) as info:
            client.infer("Apple.", schema={"entities": ["organization"]}, model_id="fastino/gliner2-base-v1")
        err = info.value
        texts += [str(err), repr(err), repr(err.detail), str(err.__cause__), str(err.__context__)]
    pioneer_emulator.clear_faults()
    pioneer_emulator.inject(fault="drop")
    with pytest.raises(ex.PioneerConnectionError) as conn_info:
        client.infer("A.", schema={"entities": ["x"]}, model_id="job_1")
    texts += [str(conn_info.value), repr(conn_info.value.__cause__)]
    out, err_out = capfd.readouterr()
    texts += [out, err_out, caplog.text]
    assert all(key not in t for t in texts)
    assert any("***" in t for t in texts)  # the echoed key was there to leak, and was scrubbed
