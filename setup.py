"""Build hook: generate the gRPC/protobuf modules from runtime/garfield/proto/garfield.proto.

Everything else about the package lives in pyproject.toml. Generated modules are not committed;
`pip install .` writes them into the wheel, and source checkouts generate them at first import.
"""

from __future__ import annotations

import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
PROTO_PACKAGE = ROOT / "runtime" / "garfield" / "proto"


class BuildWithProto(build_py):
    def run(self) -> None:
        sys.path.insert(0, str(PROTO_PACKAGE))
        try:
            from _generate import generate  # type: ignore[import-not-found]
        finally:
            sys.path.pop(0)
        generate(PROTO_PACKAGE)
        super().run()


setup(cmdclass={"build_py": BuildWithProto})
