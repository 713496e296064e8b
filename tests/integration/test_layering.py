"""The import-linter contracts fail when the layering is broken: each case copies the project,
adds one forbidden import and expects `lint-imports` to name the contract it breaks."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT = Path(sys.executable).parent / "lint-imports"

CASES = {
    "domain-reads-the-clock": ("domain/canary.py", "import time", "The domain is pure"),
    "domain-uses-sqlalchemy": ("domain/models.py", "import sqlalchemy", "The domain is pure"),
    "domain-uses-dbos": ("domain/pipeline.py", "import dbos", "The domain is pure"),
    "domain-opens-urls": ("domain/deploy.py", "import urllib.request", "The domain is pure"),
    "ci-imports-the-cli": ("ci/git.py", "import shipline.cli.app", "Layers"),
    "process-imports-the-engine": ("process.py", "import shipline.engine.runtime", "Layers"),
    "cli-imports-the-store": ("cli/actions.py", "import shipline.store.sql", "The CLI reaches"),
    "engine-imports-a-target": (
        "engine/workflow.py",
        "import shipline.targets.fake",
        "The engine reaches adapters only through its wiring",
    ),
}


def _lint(folder: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(folder / "src")}
    return subprocess.run(
        [str(LINT), "--no-cache"], cwd=folder, env=env, capture_output=True, text=True,
        timeout=300, check=False,
    )  # fmt: skip


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copytree(
        ROOT / "src" / "shipline",
        tmp_path / "src" / "shipline",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    return tmp_path


def test_the_copy_keeps_every_contract(copy: Path) -> None:
    done = _lint(copy)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "0 broken" in done.stdout


@pytest.mark.parametrize("case", sorted(CASES), ids=sorted(CASES))
def test_a_forbidden_import_breaks_its_contract(copy: Path, case: str) -> None:
    module, line, contract = CASES[case]
    path = copy / "src" / "shipline" / module
    text = path.read_text()
    path.write_text(f"{text}\n{line}  # noqa\n")  # an import anywhere in a module counts
    done = _lint(copy)
    assert done.returncode != 0, done.stdout[-3000:]
    broken = done.stdout.split("Broken contracts", 1)[-1]
    assert contract in broken, done.stdout[-3000:]
