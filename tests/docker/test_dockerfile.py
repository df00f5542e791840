"""The Dockerfile, checked without a Docker engine (none runs here).

It is parsed into instructions (continuations joined, comments dropped, ARG defaults substituted),
then checked: every COPY source exists and survives .dockerignore; the install steps pin exactly the
versions pyproject.toml names (or, for ranges, versions inside them); both variants install
PyTorch and TensorFlow the way their hardware needs; the final stage runs as a non-root user.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"


@dataclass(frozen=True)
class Instruction:
    line: int
    keyword: str
    value: str


def parse(text: str) -> list[Instruction]:
    """Dockerfile instructions, with backslash continuations joined and comment lines dropped."""
    out: list[Instruction] = []
    buffer: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not buffer and (not stripped or stripped.startswith("#")):
            continue
        if buffer and stripped.startswith("#"):
            continue  # comments inside a continued instruction are dropped by Docker too
        if not buffer:
            start = number
        if stripped.endswith("\\"):
            buffer.append(stripped[:-1])
            continue
        buffer.append(stripped)
        joined = " ".join(part.strip() for part in buffer)
        keyword, _, value = joined.partition(" ")
        out.append(Instruction(start, keyword.upper(), value.strip()))
        buffer = []
    assert not buffer, "Dockerfile ends inside a continued instruction"
    return out


def substitute(value: str, args: dict[str, str]) -> str:
    """${NAME} / $NAME -> the ARG default (unknown names are left alone: shell variables)."""
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), m.group(0)), value)


def arg_defaults(instructions: list[Instruction]) -> dict[str, str]:
    args: dict[str, str] = {}
    for ins in instructions:
        if ins.keyword == "ARG" and "=" in ins.value:
            name, _, default = ins.value.partition("=")
            args.setdefault(name, default.strip().strip('"'))
    return args


def stages(instructions: list[Instruction]) -> list[tuple[str, str, list[Instruction]]]:
    """(base, stage name, instructions) per FROM."""
    out: list[tuple[str, str, list[Instruction]]] = []
    for ins in instructions:
        if ins.keyword == "FROM":
            words = [w for w in ins.value.split() if not w.startswith("--")]
            out.append((words[0], words[2] if len(words) == 3 and words[1].upper() == "AS" else "", []))
        elif out:
            out[-1][2].append(ins)
    return out


def pins(instructions: list[Instruction], args: dict[str, str]) -> dict[str, list[str]]:
    """Every quoted requirement `name[extras]==version` in RUN steps, by canonical name."""
    found: dict[str, list[str]] = {}
    for ins in instructions:
        if ins.keyword != "RUN":
            continue
        for quoted in re.findall(r'"([A-Za-z0-9_.\-\[\],]+==[^"\s]+)"', substitute(ins.value, args)):
            req = Requirement(quoted)
            (spec,) = req.specifier
            found.setdefault(canonicalize_name(req.name), []).append(spec.version)
            for extra in req.extras:
                found.setdefault(f"{canonicalize_name(req.name)}[{extra}]", []).append(spec.version)
    return found


def dockerignore_excludes(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        pat = pat.strip("/")
        regex = re.compile(
            "^"
            + re.escape(pat).replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*").replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
            + "$"
        )
        if any(regex.match(c) for c in candidates):
            excluded = not negate
    return excluded


INSTRUCTIONS = parse(DOCKERFILE.read_text())
ARGS = arg_defaults(INSTRUCTIONS)
STAGES = stages(INSTRUCTIONS)
PINS = pins(INSTRUCTIONS, ARGS)
IGNORE = [
    line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
    if line.strip() and not line.strip().startswith("#")
]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def test_copy_sources_exist_and_are_in_the_build_context() -> None:
    copies = [ins for ins in INSTRUCTIONS if ins.keyword in ("COPY", "ADD")]
    assert copies
    checked = 0
    for ins in copies:
        words = shlex.split(ins.value)
        if any(w.startswith("--from=") for w in words):
            continue
        sources = [w for w in words if not w.startswith("--")][:-1]
        for source in sources:
            path = REPO / source
            assert path.exists(), f"Dockerfile:{ins.line}: COPY source {source} does not exist"
            rel = source.rstrip("/")
            assert not dockerignore_excludes(rel, IGNORE), f"Dockerfile:{ins.line}: {source} is excluded by .dockerignore"
            checked += 1
    assert checked >= 5


def test_dockerignore_keeps_the_package_and_drops_the_rest() -> None:
    tracked = subprocess.run(["git", "ls-files", "runtime", "operator"], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout.split()
    assert tracked
    for path in tracked:
        if not re.search(r"(__pycache__|_pb2(_grpc)?\.pyi?$)", path):
            assert not dockerignore_excludes(path, IGNORE), f"{path} would be missing from the image"
    for path in ("tests/conftest.py", "helm/garfield/values.yaml", ".git/HEAD", "runs/x/summary.json", "docs/design.md",
                 "runtime/garfield/__pycache__/cli.cpython-311.pyc", "runtime/garfield/proto/garfield_pb2.py"):
        assert dockerignore_excludes(path, IGNORE), f"{path} should stay out of the build context"


def _project_requirements() -> list[Requirement]:
    extras = PROJECT["optional-dependencies"]
    return [Requirement(r) for r in [*PROJECT["dependencies"], *extras["operator"], *extras["tensorflow"]]]


@pytest.mark.parametrize("requirement", _project_requirements(), ids=str)
def test_install_steps_pin_what_pyproject_names(requirement: Requirement) -> None:
    name = canonicalize_name(requirement.name)
    versions = PINS.get(name)
    assert versions, f"the Dockerfile installs no pinned {requirement.name}"
    for version in versions:
        assert requirement.specifier.contains(Version(version), prereleases=True), (
            f"Dockerfile pins {requirement.name}=={version}, outside pyproject.toml's {requirement}")
        exact = [s.version for s in requirement.specifier if s.operator == "=="]
        if exact:
            assert version == exact[0], f"Dockerfile pins {requirement.name}=={version}, pyproject.toml {requirement}"


def test_variants_install_matching_gpu_and_cpu_builds() -> None:
    tensorflow = PINS["tensorflow-cpu"]
    assert PINS["tensorflow[and-cuda]"] == tensorflow, "CPU and CUDA images must run the same TensorFlow release"
    run = " ".join(substitute(i.value, ARGS) for i in INSTRUCTIONS if i.keyword == "RUN")
    assert "https://download.pytorch.org/whl/cpu" in run
    assert f"https://download.pytorch.org/whl/{ARGS['TORCH_CUDA']}" in run
    # tensorflow[and-cuda] 2.x takes CUDA 12 libraries (nvidia-*-cu12, <13): torch must be a CUDA 12
    # build to share them instead of shipping a second CUDA.
    assert re.fullmatch(r"cu12\d", ARGS["TORCH_CUDA"]), ARGS["TORCH_CUDA"]
    assert "12." in next(base for base, name, _ in STAGES if name == "base-cuda")
    assert ARGS["VARIANT"] == "cpu"
    names = {name for _, name, _ in STAGES}
    assert {"base-cpu", "base-cuda"} <= names
    (_, _, cuda) = next(s for s in STAGES if s[1] == "base-cuda")
    assert any("NVIDIA_VISIBLE_DEVICES" in i.value for i in cuda if i.keyword == "ENV")


def test_external_base_images_are_pinned() -> None:
    internal = {name for _, name, _ in STAGES}
    external = [base for base, _, _ in STAGES if base.split("${")[0].rstrip("-") not in internal and base not in internal]
    assert external
    for base in external:
        assert "$" not in base, f"{base}: external base images are pinned literally, not by build argument"
        tag = base.rsplit(":", 1)[-1] if ":" in base.split("/")[-1] else ""
        assert tag and tag != "latest" and re.search(r"\d", tag), f"{base} has no pinned version tag"


def test_final_stage_is_small_and_unprivileged() -> None:
    assert len(STAGES) >= 4, "multi-stage: bases, builder, final"
    base, name, final = STAGES[-1]
    assert name == "final" and base == "base", "the final stage builds on the bare OS base, not the builder"
    users = [i.value for i in final if i.keyword == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root"), "the image must not run as root"
    assert users[-1] == "10001:10001", "the Helm chart's runAsUser/runAsGroup expect UID/GID 10001"
    copied = [i.value for i in final if i.keyword == "COPY"]
    assert copied and all(v.startswith("--from=builder ") for v in copied), "only build outputs enter the final image"
    assert not [i for i in final if i.keyword == "RUN" and re.search(r"\b(pip|uv) +(pip )?install\b", i.value)], (
        "no package installs in the final stage (they belong in the builder)")
    assert not [i for i in INSTRUCTIONS if i.keyword == "ADD"], "COPY, not ADD (no remote URLs or auto-extraction)"


def test_labels_and_python_match_the_project() -> None:
    label = next(i.value for i in INSTRUCTIONS if i.keyword == "LABEL")
    assert f'org.opencontainers.image.version="{PROJECT["version"]}"' in label
    required = PROJECT["requires-python"]
    assert Requirement(f"python{required}").specifier.contains(ARGS["PYTHON_VERSION"] + ".0")


def test_parser_handles_continuations_and_comments() -> None:
    parsed = parse('ARG A=1\n# c\nRUN echo a \\\n  # inner comment\n  && echo "x==${A}"\nFROM x:1 AS y\n')
    assert [(i.keyword, i.line) for i in parsed] == [("ARG", 1), ("RUN", 3), ("FROM", 6)]
    assert substitute(parsed[1].value, {"A": "2"}).endswith('"x==2"')
    assert dockerignore_excludes("a/b.py", ["*", "!a/"]) is False
    assert dockerignore_excludes("a/__pycache__/x.pyc", ["*", "!a/", "**/__pycache__"]) is True
