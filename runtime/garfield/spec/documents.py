"""Reading manifests that may be hostile: bounded in size, nesting, expansion and number values.

A manifest reaches `garfield validate`, `garfield run`, the webhook and the operator from anyone
who may create a job. Each check here turns an input that would crash or exhaust the reader (a
RecursionError from deep nesting, a UnicodeDecodeError, an alias bomb that expands to 10^8 values
once serialised, a NaN that JSON and Kubernetes cannot store) into one clear message naming the
problem, before the schema check runs.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml

# Kubernetes stores no object over 1.5 MiB (etcd's request limit): a larger manifest can never be a job.
MAX_BYTES = 3 * 512 * 1024
# Deeper than any job needs (its schema is 8 levels deep; task.args add the user's own), far below
# where Python's recursion limit would stop the parser with a traceback.
MAX_DEPTH = 64
# Values a manifest may hold once YAML aliases are expanded (the plan serialises the spec into
# every replica's environment, which expands them): a job needs a few hundred.
MAX_VALUES = 100_000


class DocumentError(ValueError):
    """A manifest that cannot be read safely; the message says why."""


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing nesting deeper than MAX_DEPTH as it composes (the parser
    recurses once per level and would otherwise end in a RecursionError)."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise DocumentError(f"nested deeper than {MAX_DEPTH} levels (line {mark.line + 1})")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def read_text(path: str | Path) -> str:
    """The file's text: at most MAX_BYTES of UTF-8 (a byte-order mark is allowed)."""
    with open(path, "rb") as stream:
        raw = stream.read(MAX_BYTES + 1)
    if len(raw) > MAX_BYTES:
        raise DocumentError(f"larger than {MAX_BYTES} bytes (Kubernetes stores no object over 1.5 MiB)")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DocumentError(f"not UTF-8 text: byte 0x{raw[exc.start]:02x} at offset {exc.start}") from None


def parse(text: str) -> list[Any]:
    """The non-empty YAML (or JSON) documents of `text`."""
    try:
        return [d for d in yaml.load_all(text, Loader=_BoundedLoader) if d is not None]
    except yaml.YAMLError as exc:
        raise DocumentError(f"not valid YAML: {exc}") from None


def walk(document: Any) -> tuple[list[str], list[tuple[str, float]]]:
    """(why the document cannot be read further, its non-finite numbers with their paths).

    The first list holds nesting beyond MAX_DEPTH or more than MAX_VALUES values once aliases are
    expanded: the walk stops there, so a bomb costs nothing. Non-finite numbers are left to the
    caller, which reports them where no more precise message (a parameter's bounds) already did."""
    non_finite: list[tuple[str, float]] = []
    seen = 0
    stack: list[tuple[Any, str, int]] = [(document, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        seen += 1
        if seen > MAX_VALUES:
            return [f"holds more than {MAX_VALUES} values once YAML aliases are expanded (an alias bomb?)"], []
        if depth > MAX_DEPTH:
            return [f"{path or 'the document'}: nested deeper than {MAX_DEPTH} levels"], []
        if isinstance(value, dict):
            for key, item in value.items():
                stack.append((item, f"{path}.{key}" if path else str(key), depth + 1))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                stack.append((item, f"{path}[{i}]", depth + 1))
        elif isinstance(value, float) and not math.isfinite(value):
            non_finite.append((path, value))
    return [], sorted(non_finite)


def non_finite_errors(found: list[tuple[str, float]], errors: list[str]) -> list[str]:
    """One message per non-finite number that no error in `errors` already names by its path."""
    return [f"{path}: {value} is not a finite number (JSON and Kubernetes cannot store it)"
            for path, value in found if not any(e.startswith(f"{path}:") for e in errors)]
