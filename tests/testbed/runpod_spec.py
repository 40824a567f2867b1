"""The team's copy of Runpod's REST v2 spec (openapi-v2.json, kept outside the repo) as validators.

Used by the REST v2 double (tests/testbed/runpod_double.py) to check every request and response
body against `#/components/schemas/<Name>`, with `$ref`s resolved from the spec file itself.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import jsonschema
import referencing
import referencing.jsonschema

from tests.testbed.cache import REPO

# CI clones the repo with the team's shared/ folder beside it; RUNPOD_OPENAPI_SPEC overrides.
SPEC_PATH = Path(os.environ.get("RUNPOD_OPENAPI_SPEC", REPO.parent / "shared" / "runpod" / "openapi-v2.json"))
SPEC_URI = "urn:runpod:openapi-v2"


class SpecSchemas:
    """Validators for `#/components/schemas/<Name>` of the spec file."""

    def __init__(self, path: Path = SPEC_PATH) -> None:
        self.spec = json.loads(Path(path).read_text())
        resource = referencing.Resource.from_contents(self.spec, default_specification=referencing.jsonschema.DRAFT202012)
        self.registry = referencing.Registry().with_resource(SPEC_URI, resource)
        self._validators: dict[str, jsonschema.Draft202012Validator] = {}

    def errors(self, name: str, instance: object) -> list[str]:
        validator = self._validators.get(name)
        if validator is None:
            validator = jsonschema.Draft202012Validator(
                {"$ref": f"{SPEC_URI}#/components/schemas/{name}"}, registry=self.registry)
            self._validators[name] = validator
        return [f"{'/'.join(map(str, e.absolute_path)) or '$'}: {e.message}" for e in validator.iter_errors(instance)]
