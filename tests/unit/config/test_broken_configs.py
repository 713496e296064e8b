"""Each broken configuration under broken/ gives exactly its expected located errors and exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import CLI

BROKEN = Path(__file__).parent / "broken"
CASES = sorted(p.name for p in BROKEN.iterdir() if p.is_dir())


def test_there_are_enough_cases() -> None:
    assert len(CASES) >= 25


@pytest.mark.parametrize("case", CASES, ids=CASES)
def test_broken_config_is_reported_at_its_place(
    case: str, cli: CLI, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = BROKEN / case
    expected = (folder / "expect.txt").read_text().splitlines()
    monkeypatch.chdir(folder)
    result = cli("validate")
    assert result.code == 2
    assert result.out == ""
    errors = [line for line in result.err.splitlines() if not line.startswith("    hint:")]
    assert errors == expected
    hints = [line for line in result.err.splitlines() if line.startswith("    hint:")]
    assert hints, "every case in the table comes with a hint"
    if (folder / "hint.txt").exists():  # where the hint itself is the point of the case
        assert hints == ["    hint: " + h for h in (folder / "hint.txt").read_text().splitlines()]
    assert "Traceback" not in result.err


@pytest.mark.parametrize("case", ["unknown-stack", "include-error-located"], ids=str)
def test_errors_as_json(case: str, cli: CLI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(BROKEN / case)
    result = cli("validate", "--json")
    assert result.code == 2
    data = json.loads(result.out)
    assert data["valid"] is False
    first = data["errors"][0]
    expected = (BROKEN / case / "expect.txt").read_text().splitlines()[0]
    assert f"{first['file']}:{first['line']}:{first['column']}: {first['message']}" == expected
    assert first["hint"]


def test_all_errors_are_reported_at_once(tmp_path: Path, cli: CLI) -> None:
    base = (BROKEN / "unknown-stack" / "shipline.yaml").read_text()
    broken = base.replace(
        "tier: nonprod\n    target: local\n  - name: prod",
        "tier: nonprd\n    target: local\n  - name: prod",
    )
    broken = broken.replace("ladder: [dev, prod]", "ladder: [dev, qa, prod]")
    (tmp_path / "shipline.yaml").write_text(broken)
    result = cli("--config", str(tmp_path / "shipline.yaml"), "validate")
    assert result.code == 2
    messages = [
        line.split(": ", 1)[1] for line in result.err.splitlines() if not line.startswith(" ")
    ]
    assert messages == ["unknown stack 'goo'", "unknown tier 'nonprd'", "unknown environment 'qa'"]
