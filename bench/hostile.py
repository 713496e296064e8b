"""Hostile configurations: what refusing them costs, against validating the reference config.

Each case is written into a temporary project and `shipline validate` runs on it as a user would
(a fresh process). Per case: wall seconds, CPU seconds and peak memory of that process, and the
wall time as a ratio to `shipline validate` of examples/quikapp in the same run (the baseline: a
process that starts, reads and checks a real 25 KB configuration).
Goals: every case refused (exit 2) within 5 s and 300 MB.

Run: .venv/bin/python bench/hostile.py [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXE = str(Path(sys.executable).parent / "shipline")
BASE = (ROOT / "tests/unit/config/broken/port-not-number/shipline.yaml").read_text()
GOOD = BASE.replace("port: eighty", "port: 80")


def _append(text: str) -> Callable[[Path], None]:
    def make(folder: Path) -> None:
        with open(folder / "shipline.yaml", "a") as handle:
            handle.write(text)

    return make


def _huge(folder: Path) -> None:
    with open(folder / "shipline.yaml", "a") as handle:
        for _ in range(50 * 1024):
            handle.write("# " + "x" * 1022 + "\n")


def _bomb(folder: Path) -> None:
    lines = ["bomb:", "  a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"  a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 10)]
    _append("\n".join(lines) + "\n")(folder)


CASES: dict[str, Callable[[Path], None]] = {
    "50 MB file": _huge,
    "alias bomb (10^9 values)": _bomb,
    "3,000 nested lists": _append("x: " + "[" * 3000 + "]" * 3000 + "\n"),
    "3,000 nested dashes": _append("x:\n" + "- " * 3000 + "a\n"),
    "5,000-digit number": _append("n: " + "9" * 5000 + "\n"),
    "python tag": _append('x: !!python/object/apply:os.system ["id"]\n'),
    "include /dev/zero": _append("include: [/dev/zero]\n"),
    "include a FIFO": lambda f: (_append("include: [p.yaml]\n")(f), os.mkfifo(f / "p.yaml")),
    "include a symlink loop": lambda f: (
        _append("include: [l.yaml]\n")(f),
        os.symlink("l.yaml", f / "l.yaml"),
    ),
}


def measure(folder: Path) -> dict[str, float]:
    """One `shipline validate` in `folder`: exit code, wall and CPU seconds, peak MB."""
    env = {**os.environ, "SHIPLINE_HOME": str(folder / ".state")}
    env.pop("SHIPLINE_CONFIG", None)
    start = time.perf_counter()
    process = subprocess.Popen(
        [EXE, "validate"], cwd=folder, env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return {
        "exit": process.returncode,
        "wall": time.perf_counter() - start,
        "cpu": usage.ru_utime + usage.ru_stime,
        "mb": usage.ru_maxrss / 1024,
    }


def best(folder: Path, runs: int) -> dict[str, float]:
    results = [measure(folder) for _ in range(runs)]
    return min(results, key=lambda r: r["wall"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        reference = Path(tmp) / "quikapp"
        shutil.copytree(ROOT / "examples" / "quikapp", reference)
        baseline = best(reference, args.runs)
        assert baseline["exit"] == 0, "the reference configuration should validate"
        rows = {}
        for name, make in CASES.items():
            folder = Path(tmp) / name.replace(" ", "-").replace("/", "_")
            folder.mkdir()
            (folder / "shipline.yaml").write_text(GOOD)
            make(folder)
            result = best(folder, args.runs)
            rows[name] = {
                **{k: round(v, 3) for k, v in result.items()},
                "wallOverBaseline": round(result["wall"] / baseline["wall"], 2),
            }
    report = {
        "baselineValidateQuikapp": {k: round(v, 3) for k, v in baseline.items()},
        "cases": rows,
        "goals": {
            "allRefusedWithExit2": all(r["exit"] == 2 for r in rows.values()),
            "within5s": all(r["wall"] < 5 for r in rows.values()),
            "within300MB": all(r["mb"] < 300 for r in rows.values()),
        },
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
