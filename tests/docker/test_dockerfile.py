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


# ---------------------------------------------------------------- local equivalents (docs/image.md)
# scripts/build-image.sh builds this Dockerfile on machines without a registry or GitHub by setting
# these build arguments; unset, each is the real source, so a plain `docker build` is unchanged.
LOCAL_EQUIVALENTS = {"PYTHON_FROM": "uv", "TORCH_FIND_LINKS": "", "FRAMEWORKS": "all"}
BUILD_SCRIPT = REPO / "scripts" / "build-image.sh"


def _declared_args() -> set[str]:
    return {ins.value.split("=", 1)[0].strip() for ins in INSTRUCTIONS if ins.keyword == "ARG"}


def test_local_equivalent_args_default_to_the_real_sources() -> None:
    for name, real in LOCAL_EQUIVALENTS.items():
        assert ARGS.get(name) == real, f"ARG {name} must default to {real!r} (the real build), not {ARGS.get(name)!r}"
    # SSL_CERT_FILE is declared without a value: unset in the real build, and an ARG never reaches the image.
    assert "SSL_CERT_FILE" in _declared_args() and "SSL_CERT_FILE" not in ARGS
    assert not [i for i in INSTRUCTIONS if i.keyword == "ENV" and "SSL_CERT_FILE" in i.value]


def test_the_build_script_sets_only_declared_args_and_builds_the_file_as_it_is() -> None:
    script = BUILD_SCRIPT.read_text()
    given = set(re.findall(r"--build-arg \"?(\w+)=", script))
    assert {"PYTHON_FROM", "TORCH_FIND_LINKS", "FRAMEWORKS", "SSL_CERT_FILE", "VARIANT"} <= given
    assert given <= _declared_args(), f"build-image.sh passes undeclared build args: {given - _declared_args()}"
    assert "--pull=never" in script, "the local stand-ins must be used, never pulled over"
    # The stand-ins are named after the Dockerfile's FROM lines, read from it (not a second copy).
    assert "from_image '^debian:'" in script and "from_image 'astral-sh/uv:'" in script
    subprocess.run(["bash", "-n", str(BUILD_SCRIPT)], check=True)


def _stage(name: str) -> list[Instruction]:
    return next(body for _, stage, body in STAGES if stage == name)


def _simulate(stage: str, overrides: dict[str, str], tmp_path: Path) -> tuple[int, list[str]]:
    """Run the stage's install RUN steps with /bin/sh, every command a stub that only logs its argv
    (PATH holds nothing else, so nothing real runs): which commands would the build run?"""
    stubs = tmp_path / "bin"
    stubs.mkdir(exist_ok=True)
    log = tmp_path / "calls.log"
    log.write_text("")
    for command in ("apt-get", "rm", "mkdir", "uv"):
        stub = stubs / command
        stub.write_text(f'#!/bin/sh\necho "{command} $* [UV_PYTHON_PREFERENCE=$UV_PYTHON_PREFERENCE]" >> {log}\n')
        stub.chmod(0o755)
    env = {**ARGS, **overrides}
    for ins in _stage(stage):
        if ins.keyword == "ENV":
            env.update(dict(pair.split("=", 1) for pair in shlex.split(ins.value)))
    env["PATH"] = str(stubs)
    for ins in _stage(stage):
        if ins.keyword != "RUN" or "/opt/venv/bin/" in ins.value:  # the project's own step runs the real thing
            continue
        result = subprocess.run(["/bin/sh", "-c", ins.value], env=env, capture_output=True, text=True)
        if result.returncode:
            return result.returncode, log.read_text().splitlines()
    return 0, log.read_text().splitlines()


def test_default_build_installs_from_the_real_sources(tmp_path: Path) -> None:
    rc, base = _simulate("base", {}, tmp_path)
    installs = [c for c in base if c.startswith("apt-get install")]
    assert rc == 0 and any(c.split("[")[0].split()[-1] == "ca-certificates" for c in installs), base
    assert not any("python3" in c for c in base), "the real image's python is uv's, not Debian's"
    rc, builder = _simulate("builder", {}, tmp_path)
    assert rc == 0, builder
    assert f"uv python install {ARGS['PYTHON_VERSION']} [UV_PYTHON_PREFERENCE=only-managed]" in builder
    assert f"uv venv --seed --python {ARGS['PYTHON_VERSION']} /opt/venv [UV_PYTHON_PREFERENCE=only-managed]" in builder
    torch = [c for c in builder if " torch==" in c]
    assert torch == [f"uv pip install --index-url https://download.pytorch.org/whl/cpu torch=={ARGS['TORCH_VERSION']} "
                     "[UV_PYTHON_PREFERENCE=only-managed]"], torch
    assert any(f" tensorflow-cpu=={ARGS['TENSORFLOW_VERSION']} " in c for c in builder)
    assert not any("find-links" in c or "mkdir" in c for c in builder)
    rc, cuda = _simulate("builder", {"VARIANT": "cuda"}, tmp_path)
    assert rc == 0 and any(f"whl/{ARGS['TORCH_CUDA']} torch==" in c for c in cuda)
    assert any(f" tensorflow[and-cuda]=={ARGS['TENSORFLOW_VERSION']} " in c for c in cuda)


def test_local_equivalents_replace_only_what_they_name(tmp_path: Path) -> None:
    local = {"PYTHON_FROM": "debian", "TORCH_FIND_LINKS": "/mnt/wheels", "SSL_CERT_FILE": "/mnt/ca-certificates.crt"}
    rc, base = _simulate("base", local, tmp_path)
    assert rc == 0 and any(c.startswith("apt-get install") and " python3 " in c for c in base), base
    rc, builder = _simulate("builder", local, tmp_path)
    assert rc == 0, builder
    assert not any(c.startswith("uv python install") for c in builder), "no python-build-standalone download"
    assert any(c.startswith("mkdir -p /opt/python") for c in builder), "the final stage copies /opt/python"
    assert f"uv venv --seed --python {ARGS['PYTHON_VERSION']} /opt/venv [UV_PYTHON_PREFERENCE=only-system]" in builder
    torch = [c for c in builder if " torch==" in c]
    # +cpu: a local version that only the folder has, so PyTorch's CUDA build on PyPI is never chosen.
    assert torch == [f"uv pip install --find-links /mnt/wheels torch=={ARGS['TORCH_VERSION']}+cpu "
                     "[UV_PYTHON_PREFERENCE=only-managed]"], torch
    assert any(f" tensorflow-cpu=={ARGS['TENSORFLOW_VERSION']} " in c for c in builder)
    rc, slim = _simulate("builder", {**local, "FRAMEWORKS": "pytorch"}, tmp_path)
    assert rc == 0 and not any("tensorflow" in c for c in slim) and any(" kopf==" in c for c in slim), slim


def test_local_equivalents_refuse_what_they_cannot_serve(tmp_path: Path) -> None:
    assert _simulate("base", {"VARIANT": "cuda", "PYTHON_FROM": "debian"}, tmp_path)[0] != 0, "Ubuntu's python is not 3.11"
    assert _simulate("base", {"PYTHON_FROM": "conda"}, tmp_path)[0] != 0
    assert _simulate("builder", {"VARIANT": "cuda", "TORCH_FIND_LINKS": "/wheels"}, tmp_path)[0] != 0
    assert _simulate("builder", {"FRAMEWORKS": "tensorflow"}, tmp_path)[0] != 0


def _built_image() -> str | None:
    """The image of the current tree when build-image.sh has built it on this machine (else None)."""
    import shutil

    if not shutil.which("podman"):
        return None
    check = subprocess.run(["bash", str(BUILD_SCRIPT), "check"], capture_output=True, text=True, timeout=120)
    if check.returncode:
        return None
    return subprocess.run(["bash", str(BUILD_SCRIPT), "image"], capture_output=True, text=True, check=True).stdout.strip()


def test_built_image_runs_as_the_runtime_user() -> None:
    image = _built_image()
    if image is None:
        pytest.skip("no image of the current tree: scripts/build-image.sh build")
    run = ["podman", "run", "--rm", "--runtime", "runc", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
           "--no-healthcheck", "--network", "none", "-e", "TF_CPP_MIN_LOG_LEVEL=2", image]
    probe = ("import os, garfield, torch, tensorflow, garfield_operator; print(os.getuid(), os.getgid(), torch.__version__, "
             "tensorflow.__version__)")
    out = subprocess.run([*run, "python", "-c", probe], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    uid, gid, torch, tensorflow = out.stdout.split()[-4:]
    assert (uid, gid) == ("10001", "10001")
    assert torch == f"{ARGS['TORCH_VERSION']}+cpu" and tensorflow == ARGS["TENSORFLOW_VERSION"]
    for command in (["garfield", "--help"], ["garfield-operator", "--help"]):
        result = subprocess.run([*run, *command], capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, (command, result.stderr[-2000:])
