"""docs/spec-reference.md is generated from the CRD schema; a stale copy fails here."""

from __future__ import annotations

import importlib.util
from types import ModuleType

from garfield.aggregators.catalog import RULES
from garfield.spec.schema import crd

from helm_support import REPO


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_spec_reference", REPO / "scripts" / "gen-spec-reference.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_spec_reference_is_up_to_date() -> None:
    generated = _generator().render(crd())
    assert (REPO / "docs" / "spec-reference.md").read_text() == generated, "run scripts/gen-spec-reference.py"


def test_spec_reference_documents_every_field_and_rule() -> None:
    text = _generator().render(crd())
    root = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]

    def paths(schema: dict, prefix: str):
        yield prefix
        if schema.get("type") == "array" and "properties" in schema.get("items", {}):
            schema, prefix = schema["items"], prefix + "[]"
        for name, child in schema.get("properties", {}).items():
            yield from paths(child, f"{prefix}.{name}")

    for path in [*paths(root["properties"]["spec"], "spec"), *paths(root["properties"]["status"], "status")]:
        assert f"| `{path}` |" in text, path
    for name, rule in RULES.items():
        assert f"| `{name}`" in text and f"{rule.condition.min_n(2) + 2} |" in text, name
    assert "| `spec.workers.replicas` | integer | yes |  | 1 to 1024 |" in text
