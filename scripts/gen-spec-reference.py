#!/usr/bin/env python3
"""Render docs/spec-reference.md from the ByzantineTrainingJob CRD schema.

The CRD's OpenAPI schema (runtime/garfield/spec/schema.py) is the one definition of a job, so the
reference is generated from it instead of written by hand: a field, bound, default or enum changes
in one place and the docs follow. tests/helm/test_docs.py fails when the committed file is stale.

    scripts/gen-spec-reference.py            # rewrite docs/spec-reference.md
    scripts/gen-spec-reference.py --check    # exit 1 if docs/spec-reference.md is out of date
    scripts/gen-spec-reference.py --stdout   # print instead of writing
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "docs" / "spec-reference.md"

Schema = dict[str, Any]



def _type_name(schema: Schema) -> str:
    """A short human type: integer, string, map[string]string, []object, quantity, object."""
    if schema.get("x-kubernetes-int-or-string"):
        return "quantity (integer or string)"
    kind = schema.get("type")
    if kind == "array":
        return f"[]{_type_name(schema.get('items', {}))}"
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return f"map[string]{_type_name(schema['additionalProperties'])}"
    if kind == "object" and schema.get("x-kubernetes-preserve-unknown-fields") and "properties" not in schema:
        return "object (free-form)"
    if kind == "string" and schema.get("format"):
        return f"string ({schema['format']})"
    return str(kind or "any")


def _constraints(schema: Schema) -> str:
    parts: list[str] = []
    if "enum" in schema:
        parts.append("one of " + ", ".join(f"`{v}`" for v in schema["enum"]))
    if "minimum" in schema and "maximum" in schema:
        parts.append(f"{schema['minimum']} to {schema['maximum']}")
    elif "minimum" in schema:
        parts.append(f">= {schema['minimum']}")
    elif "maximum" in schema:
        parts.append(f"<= {schema['maximum']}")
    if "pattern" in schema and not schema.get("x-kubernetes-int-or-string"):
        parts.append(f"matches `{schema['pattern']}`")
    return "; ".join(parts)


def _cell(text: str) -> str:
    """Escape what would break a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def _rows(schema: Schema, path: str, required: bool) -> Iterator[tuple[str, str, str, str, str, str]]:
    """Depth-first (path, type, required, default, constraints, description) for a schema node."""
    default = json.dumps(schema["default"]) if "default" in schema else ""
    yield (path, _type_name(schema), "yes" if required else "", default, _constraints(schema), schema.get("description", ""))
    if schema.get("type") == "array" and "properties" in schema.get("items", {}):
        schema = schema["items"]
        path = f"{path}[]"
    needed = set(schema.get("required", []))
    for name, child in schema.get("properties", {}).items():
        yield from _rows(child, f"{path}.{name}", name in needed)


def _table(rows: Iterator[tuple[str, ...]]) -> list[str]:
    lines = ["| field | type | required | default | allowed | description |", "|---|---|---|---|---|---|"]
    for path, kind, req, default, allowed, description in rows:
        lines.append(
            f"| `{path}` | {_cell(kind)} | {req} | {f'`{default}`' if default else ''} | {_cell(allowed)} "
            f"| {_cell(description)} |"
        )
    return lines


def _param_rows(owner: str, params: tuple[Any, ...]) -> list[str]:
    """One table row per typed parameter (garfield.params.Param): type, default, bounds, doc."""
    rows = []
    for p in params:
        default = "null" if p.default is None else json.dumps(p.default)
        rows.append(f"| {owner} | `{p.name}` | {p.type_text()} | `{default}` | {_cell(p.allowed_text())} | {_cell(p.doc)} |")
    return rows


def _rules_section() -> list[str]:
    """Each GAR's resilience condition and typed parameters, from garfield.aggregators.catalog."""
    from garfield.aggregators.catalog import RULES

    krum = RULES["krum"].condition
    lines = [
        "## Aggregation rules",
        "",
        "A node waits for the first q = n - f replies of a role (n = `replicas`, f = `byzantine`) and aggregates them, "
        f"so a rule's condition must hold for q replies: `krum` (q >= {krum.text()[5:]}) with f = 2 needs "
        f"q >= {krum.min_n(2)}, that is n >= {krum.min_n(2) + 2}.",
        "",
        "| `gar.name` | condition on the q = n - f replies | smallest n for f = 1 | for f = 2 | what it computes |",
        "|---|---|---|---|---|",
    ]
    for name in sorted(RULES):
        rule = RULES[name]
        cond = rule.condition
        robust = "" if rule.robust else " (not robust: for comparison runs only)"
        lines.append(f"| `{name}`{robust} | q >= {cond.text()[5:]} | {cond.min_n(1) + 1} | {cond.min_n(2) + 2} "
                     f"| {_cell(rule.summary)} |")
    lines += [
        "",
        "`gar.params` (anything else is refused; in the bounds, n is the q replies aggregated and f is `byzantine`). "
        "`garfield validate` and the operator check them, and `aggregate()` checks the same bounds on every call:",
        "",
        "| `gar.name` | parameter | type | default | allowed | description |",
        "|---|---|---|---|---|---|",
    ]
    for name in sorted(RULES):
        lines += _param_rows(f"`{name}`", RULES[name].params)
    return lines + [""]


def _stages_section() -> list[str]:
    """Each pre-aggregation stage's condition, shape and typed parameters, from
    garfield.aggregators.preaggregation."""
    from garfield.aggregators.preaggregation import STAGES

    lines = [
        "## Pre-aggregation stages",
        "",
        "`gar.preAggregation` runs these in order on the q replies before the rule; each one's condition holds on "
        "the vectors it gets, and the rule's condition on the vectors the last one hands on (bucketing hands on "
        "ceil(n/s); the others n). Every stage hands on the same f.",
        "",
        "| `name` | condition on the n vectors it gets | vectors handed on | what it computes |",
        "|---|---|---|---|",
    ]
    for name in sorted(STAGES):
        stage = STAGES[name]
        handed = "ceil(n/s)" if stage.shape(12, 1, {"s": 2}) != (12, 1) else "n"
        lines.append(f"| `{name}` | {stage.condition.text()} | {handed} | {_cell(stage.summary)} |")
    lines += ["", "| `name` | parameter | type | default | allowed | description |", "|---|---|---|---|---|---|"]
    for name in sorted(STAGES):
        lines += _param_rows(f"`{name}`", STAGES[name].params)
    return lines + [""]


def _attacks_section() -> list[str]:
    """Each attack's summary and typed parameters, from garfield.attacks.catalog."""
    from garfield.attacks.catalog import SERVER_ATTACKS, WORKER_ATTACKS

    lines = [
        "## Simulated attacks",
        "",
        "The `count` highest-indexed replicas of the role run the attack; `count` may not exceed the role's `byzantine`. "
        "An attack that may send nothing is never scheduled first (no schedule makes a silent node answer).",
        "",
        "| attack | `name` | what it sends | may send nothing |",
        "|---|---|---|---|",
    ]
    tables = (("spec.attack.workers", WORKER_ATTACKS), ("spec.attack.servers", SERVER_ATTACKS))
    for path, table in tables:
        for name in sorted(table):
            spec = table[name]
            lines.append(f"| `{path}` | `{name}` | {_cell(spec.summary)} | {'yes' if spec.withholds else ''} |")
    lines += [
        "",
        "`params` of each attack (anything else is refused; checked by `garfield validate`, the operator and the "
        "attack itself):",
        "",
        "| attack | parameter | type | default | allowed | description |",
        "|---|---|---|---|---|---|",
    ]
    for path, table in tables:
        for name in sorted(table):
            lines += _param_rows(f"`{path}` `{name}`", table[name].params)
    return lines + [""]


def render(crd: Schema) -> str:
    """The whole Markdown page for one CRD document."""
    names = crd["spec"]["names"]
    version = crd["spec"]["versions"][0]
    root = version["schema"]["openAPIV3Schema"]
    api_version = f"{crd['spec']['group']}/{version['name']}"
    lines = [
        "<!-- Generated by scripts/gen-spec-reference.py from runtime/garfield/spec/schema.py; do not edit by hand. -->",
        f"# {names['kind']} reference",
        "",
        f"`apiVersion: {api_version}`, `kind: {names['kind']}` (short name{'s' if len(names.get('shortNames', [])) > 1 else ''} "
        + ", ".join(f"`{s}`" for s in names.get("shortNames", []))
        + f"), namespaced. {root.get('description', '')}",
        "",
        "The apiserver enforces the types, bounds, enums and defaults below. Rules that span several fields "
        "(each rule's resilience condition on the n - f replies it aggregates, `attack.*.count` <= `byzantine`, "
        "no `servers` in a decentralized job) are checked by `garfield validate` and by the operator, which reports "
        "a violating job in its status and events and creates no pods. See [aggregation rules](#aggregation-rules).",
        "",
        "## spec",
        "",
        *_table(_rows(root["properties"]["spec"], "spec", True)),
        "",
        "## status (written by the operator)",
        "",
        *_table(_rows(root["properties"]["status"], "status", False)),
        "",
        f"## `kubectl get {names['shortNames'][0] if names.get('shortNames') else names['plural']}` columns",
        "",
        "| column | type | from | description |",
        "|---|---|---|---|",
    ]
    for column in version.get("additionalPrinterColumns", []):
        lines.append(f"| {column['name']} | {column['type']} | `{column['jsonPath']}` | {_cell(column.get('description', ''))} |")
    lines.append("")
    lines += _rules_section() + _stages_section() + _attacks_section()
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="exit 1 and show a diff if the file is stale")
    mode.add_argument("--stdout", action="store_true", help="print the page instead of writing it")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT / "runtime"))
    from garfield.spec.schema import crd

    text = render(crd())
    if args.stdout:
        sys.stdout.write(text)
        return 0
    if args.check:
        current = TARGET.read_text() if TARGET.exists() else ""
        if current == text:
            return 0
        sys.stderr.writelines(difflib.unified_diff(current.splitlines(True), text.splitlines(True), str(TARGET), "generated"))
        print(f"\n{TARGET.relative_to(ROOT)} is stale: run scripts/gen-spec-reference.py", file=sys.stderr)
        return 1
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    TARGET.write_text(text)
    print(f"wrote {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
