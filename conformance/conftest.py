"""The contract check reads Pioneer's OpenAPI document from outside the repo (PIONEER_OPENAPI)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012


class OpenAPI:
    """Validators for the document's schemas, with ``#/components/...`` references resolved."""

    def __init__(self, path: Path) -> None:
        self.doc: dict[str, Any] = json.loads(path.read_text())
        self._registry = Registry().with_resource("urn:pioneer", DRAFT202012.create_resource(self.doc))

    def validator(self, schema: dict[str, Any]) -> Draft202012Validator:
        rebased = json.loads(json.dumps(schema).replace('"#/components/', '"urn:pioneer#/components/'))
        return Draft202012Validator(rebased, registry=self._registry)

    def component(self, name: str) -> Draft202012Validator:
        return self.validator({"$ref": f"#/components/schemas/{name}"})

    def response(self, path: str, method: str, status: int) -> Draft202012Validator:
        spec = self.doc["paths"][path][method]["responses"][str(status)]
        if "$ref" in spec:
            spec = self.doc["components"]["responses"][spec["$ref"].rsplit("/", 1)[1]]
        return self.validator(spec["content"]["application/json"]["schema"])

    def request(self, path: str, method: str) -> Draft202012Validator:
        return self.validator(
            self.doc["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]
        )


@pytest.fixture(scope="session")
def openapi() -> OpenAPI:
    # `make conformance` passes the team's copy (../shared) or the snapshot beside this file.
    location = os.environ.get("PIONEER_OPENAPI") or str(
        Path(__file__).resolve().parent / "openapi-inference.json"
    )
    path = Path(location)
    if not path.is_file():
        pytest.fail(f"Pioneer's OpenAPI document is not at {path}; set PIONEER_OPENAPI to its path.")
    return OpenAPI(path)
