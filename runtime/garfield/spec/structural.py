"""Check a manifest against the CRD's own schema, the way the apiserver would, plus typo detection.

Running the CRD schema locally means `garfield validate` and `garfield run` refuse exactly what
`kubectl apply` refuses, with the same field paths. Unlike the apiserver (which silently prunes
unknown fields), unknown fields are errors here: a misspelled `replica:` must not vanish.
Defaults declared in the schema are filled in, so every later reader sees one normalised spec.
"""

from __future__ import annotations

import copy
import re
from typing import Any

Schema = dict[str, Any]

_TYPE_NAMES = {"object": "an object", "array": "a list", "string": "a string", "integer": "an integer",
               "number": "a number", "boolean": "true or false"}


def _type_ok(expected: str, value: Any) -> bool:
    if expected == "object":
        return isinstance(value, dict)
    if expected == "array":
        return isinstance(value, list)
    if expected == "string":
        return isinstance(value, str)
    if expected == "boolean":
        return isinstance(value, bool)
    if expected == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if expected == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return True


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check(value: Any, schema: Schema, path: str, errors: list[str]) -> Any:
    """Validate `value` at `path`, append messages to `errors`, return the value with defaults filled."""
    if "anyOf" in schema:
        if not any(_type_ok(alt.get("type", ""), value) for alt in schema["anyOf"]):
            kinds = " or ".join(_TYPE_NAMES.get(alt.get("type", ""), "?") for alt in schema["anyOf"])
            errors.append(f"{path}: {_describe(value)} must be {kinds}")
            return value
        if isinstance(value, str) and "pattern" in schema and not re.fullmatch(schema["pattern"], value):
            errors.append(f"{path}: {_describe(value)} is not a valid quantity")
        return value
    expected = schema.get("type")
    if expected and not _type_ok(expected, value):
        errors.append(f"{path}: {_describe(value)} must be {_TYPE_NAMES[expected]}")
        return value
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {_describe(value)} is not one of {', '.join(map(str, schema['enum']))}")
    if "minimum" in schema and value < schema["minimum"]:
        errors.append(f"{path}: {_describe(value)} is below the minimum {schema['minimum']}")
    if "maximum" in schema and value > schema["maximum"]:
        errors.append(f"{path}: {_describe(value)} is above the maximum {schema['maximum']}")
    if "pattern" in schema and isinstance(value, str) and not re.fullmatch(schema["pattern"], value):
        errors.append(f"{path}: {_describe(value)} does not match {schema['pattern']}")
    if expected == "array" and "maxItems" in schema and len(value) > schema["maxItems"]:
        errors.append(f"{path}: {len(value)} items, more than the maximum {schema['maxItems']}")
        return value
    if expected == "array" and "items" in schema:
        return [check(item, schema["items"], f"{path}[{i}]", errors) for i, item in enumerate(value)]
    if expected == "object":
        if "properties" not in schema and not isinstance(schema.get("additionalProperties"), dict):
            return copy.deepcopy(value)  # free-form (task args, GAR params, metadata)
        out: dict[str, Any] = {}
        properties: Schema = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key in schema.get("required", []):
            if key not in value:
                errors.append(f"{path}.{key}: required field is missing")
        for key, item in value.items():
            if key in properties:
                out[key] = check(item, properties[key], f"{path}.{key}", errors)
            elif isinstance(extra, dict):
                out[key] = check(item, extra, f"{path}.{key}", errors)
            elif schema.get("x-kubernetes-preserve-unknown-fields"):
                out[key] = copy.deepcopy(item)  # declared fields checked, the rest kept (pod volumes)
            else:
                known = ", ".join(sorted(properties)) or "none"
                errors.append(f"{path}.{key}: unknown field (known fields: {known})")
        for key, sub in properties.items():
            if key in out:
                continue
            if "default" in sub:
                out[key] = copy.deepcopy(sub["default"])
            elif sub.get("type") == "object" and "properties" in sub and not sub.get("required"):
                # Materialise optional sections (training, timeouts, runPolicy) whose fields have
                # defaults, so every reader sees them; sections needing user input stay absent.
                filled = check({}, sub, f"{path}.{key}", errors)
                if filled:
                    out[key] = filled
        return out
    return value
