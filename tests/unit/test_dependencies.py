"""Dependency floors: compatible-release bounds in pyproject.toml, exact versions in constraints.txt,
and the venv `make` builds is the one the constraints describe."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]


def _requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in [*project["dependencies"], *project["optional-dependencies"]["dev"]]]


def _constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, pinned = line.partition("==")
            pins[canonicalize_name(name)] = pinned
    return pins


def test_every_dependency_has_a_compatible_release_bound() -> None:
    for req in _requirements():
        assert [s.operator for s in req.specifier] == ["~="], f"{req}: use a compatible-release bound (~=)"


def test_constraints_pin_every_dependency_inside_its_bound_and_match_the_venv() -> None:
    pins = _constraints()
    for req in _requirements():
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not in constraints.txt"
        assert req.specifier.contains(pins[name]), f"constraints.txt pins {req.name}=={pins[name]} outside {req}"
        assert version(req.name) == pins[name], f"the venv has {req.name} {version(req.name)}, not {pins[name]}"


def test_make_venv_installs_with_the_constraints() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"pip install .*-e '\.\[dev\]' -c constraints\.txt", makefile)
