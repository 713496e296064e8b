"""Smoke gate: every deployed service answers its root with the version promoted."""

from __future__ import annotations

import json
import os
import sys
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
from _report import write

addresses = json.loads(os.environ["SHIPLINE_ADDRESSES"])
versions = json.loads(os.environ["SHIPLINE_VERSIONS"])
cases: list[tuple[str, str | None]] = []
for service, version in sorted(versions.items()):
    try:
        with urllib.request.urlopen(f"{addresses[service]}/version", timeout=5) as response:
            seen = json.loads(response.read()).get("version")
        cases.append((service, None if seen == version else f"answers {seen}, not {version}"))
    except (OSError, KeyError, ValueError) as exc:
        cases.append((service, f"no answer: {exc}"))
write("smoke", cases)
print(f"smoke: {sum(1 for _, f in cases if not f)}/{len(cases)} services answer")
sys.exit(1 if any(f for _, f in cases) else 0)
