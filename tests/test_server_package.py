"""The dashboard's files travel in the wheel: pyproject's package data covers all of web/."""

from __future__ import annotations

import tomllib
from fnmatch import fnmatch
from pathlib import Path

import distill

ROOT = Path(__file__).parent.parent


def test_every_template_and_static_file_is_package_data() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["distill"]
    web = ROOT / "web"
    shipped = [p for p in (web / "templates").rglob("*") if p.is_file()]
    shipped += [p for p in (web / "static").rglob("*") if p.is_file() and p.name != ".installed"]
    assert any(p.name == "htmx.min.js" for p in shipped), "run `make install` (npm ci) first"
    missing = [
        str(p.relative_to(ROOT))
        for p in shipped
        if not any(fnmatch(f"web/{p.relative_to(web)}", pattern) for pattern in patterns)
    ]
    assert missing == []


def test_the_package_reaches_web_through_its_link() -> None:
    linked = Path(distill.__file__).parent / "web"
    assert (linked / "templates" / "base.html").is_file()
    assert linked.resolve() == (ROOT / "web").resolve()
