"""moto's standalone server on loopback: a real AWS API over HTTP for the tests (S3, Secrets Manager).

``ThreadedMotoServer`` on 127.0.0.1 and a free port, in the test process, reached by boto3 and by
Airflow's Amazon provider through an AWS connection whose ``endpoint_url`` is the server. The
service-specific helpers build on it: ``tests/object_stores.py`` (S3), ``tests/secret_stores.py``
(Secrets Manager).
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

REGION = "us-east-1"
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MotoServer:
    """One moto server on loopback, and how to reach it.

    :param service: the boto3 service name :meth:`client` is for (``s3``, ``secretsmanager``);
        the server itself answers every service moto has.
    """

    def __init__(self, service: str) -> None:
        from moto.server import ThreadedMotoServer

        # The server logs every request through werkzeug: keep the test logs readable.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self.service = service
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        #: An Airflow AWS connection (JSON, for ``AIRFLOW_CONN_...``) that talks to this server.
        self.connection = json.dumps(
            {
                "conn_type": "aws",
                "login": CREDENTIALS["aws_access_key_id"],
                "password": CREDENTIALS["aws_secret_access_key"],
                "extra": {"endpoint_url": self.url, "region_name": REGION},
            }
        )

    def client(self) -> Any:
        """A boto3 client of the service, for the test's own reads and setup."""
        import boto3

        return boto3.client(self.service, endpoint_url=self.url, region_name=REGION, **CREDENTIALS)


@contextmanager
def moto_server(service: str) -> Iterator[MotoServer]:
    """A started :class:`MotoServer` for ``service``, stopped again on exit."""
    server = MotoServer(service)
    server._server.start()
    try:
        yield server
    finally:
        server._server.stop()
