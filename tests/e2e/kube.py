"""The test control plane (scripts/test starts it) as end-to-end tests reach it."""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

import pytest

KUBECONFIG = "SHIPLINE_TEST_KUBECONFIG"


def kubeconfig() -> str:
    """The test cluster's kubeconfig: a failure under CI when it is missing, else a skip."""
    found = os.environ.get(KUBECONFIG)
    if not found:
        if os.environ.get("CI"):
            pytest.fail(f"{KUBECONFIG} is unset under CI: scripts/test starts the control plane")
        pytest.skip(f"no Kubernetes API server: {KUBECONFIG} is unset (scripts/test starts one)")
    return found


def kubectl(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """`kubectl ARGS` against the test cluster."""
    done = subprocess.run(
        ["kubectl", "--kubeconfig", kubeconfig(), *args],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    if check and done.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)}: {done.stderr}")
    return done


def objects(kind: str, namespace: str) -> dict[str, dict[str, Any]]:
    """The objects of `kind` in `namespace`, by name."""
    items = json.loads(kubectl("get", kind, "-n", namespace, "-o", "json").stdout)["items"]
    return {item["metadata"]["name"]: item for item in items}


def drop_namespace(namespace: str) -> None:
    """Remove a test namespace and wait until it is gone."""
    kubectl("delete", "namespace", namespace, "--ignore-not-found", "--wait=true",
            "--timeout=90s", check=False)  # fmt: skip
