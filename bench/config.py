"""Configuration speed: load + validate of a large config, one `vars show` resolution, `--help`.

Generates 1,000 services x 10 environments x 100 variables per variable group (an environment
group each, plus a global group and a group per stack), then times, in the same run:
  - load+validate (shipline) against a plain YAML parse of the same files (baseline),
  - one resolution of an (environment, service) as `vars show` does it (secrets skipped),
  - `shipline --help` wall time against `python -c pass` (interpreter start-up baseline).
Goals: load+validate < 1 s, resolution < 100 ms, --help < 300 ms.

Run: .venv/bin/python bench/config.py [--services 1000] [--envs 10] [--vars 100]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from _timing import best_of

STACKS = ["springboot", "nestjs", "go", "elixir", "python"]


def generate(folder: Path, services: int, envs: int, variables: int) -> Path:
    """Write shipline.yaml and its includes into `folder`."""
    lines = ["project: bench", "include: [services.yaml, groups.yaml]", "stacks:"]
    for stack in STACKS:
        lines += [
            f"  {stack}:",
            "    port: 8080",
            "    healthPath: /health",
            f"    variableGroups: [stack-{stack}]",
        ]
    lines += [
        "tiers:",
        "  nonprod: {}",
        "targets:",
        "  local: {type: local}",
        "approverGroups:",
        "  leads: {members: [ann, bob]}",
        "environments:",
    ]
    for e in range(envs):
        lines += [
            f"  - name: env{e}",
            "    cluster: local",
            f"    namespace: bench-{e}",
            "    tier: nonprod",
            "    target: local",
            f"    variableGroups: [env{e}-vars]",
            "    approvals: {groups: [leads]}",
        ]
    lines.append("ladder: [" + ", ".join(f"env{e}" for e in range(envs)) + "]")
    lines += [
        "globalVariableGroups: [global]",
        "secretStores:",
        "  local: {type: file}",
        "defaultSecretStore: local",
    ]
    (folder / "shipline.yaml").write_text("\n".join(lines) + "\n")
    svc = ["services:"]
    for i in range(services):
        svc += [
            f"  - name: service-{i}",
            f"    stack: {STACKS[i % 5]}",
            f"    paths: [services/service-{i}/**]",
            f"    image: bench/service-{i}",
        ]
    (folder / "services.yaml").write_text("\n".join(svc) + "\n")
    groups = ["variableGroups:"]
    names = ["global"] + [f"env{e}-vars" for e in range(envs)] + [f"stack-{s}" for s in STACKS]
    for name in names:
        groups += [f"  {name}:", "    variables:"]
        for v in range(variables):
            value = f"$(var{v - 1})-{name}" if v % 10 == 1 else f"value-{v}-{name}"
            groups.append(f"      var{v}: '{value}'")
        groups.append("      secretThing: {secret: true, optional: true}")
    (folder / "groups.yaml").write_text("\n".join(groups) + "\n")
    return folder / "shipline.yaml"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--envs", type=int, default=10)
    parser.add_argument("--vars", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    from ruamel.yaml import YAML

    from shipline.config.loader import load_config
    from shipline.engine.variables import find_scope, resolve

    with tempfile.TemporaryDirectory() as tmp:
        path = generate(Path(tmp), args.services, args.envs, args.vars)
        files = [path, path.parent / "services.yaml", path.parent / "groups.yaml"]

        def plain_parse() -> None:
            yaml = YAML(typ="safe", pure=False)
            for f in files:
                yaml.load(f.read_text())

        baseline = best_of(args.runs, plain_parse)
        load = best_of(args.runs, lambda: load_config(path))
        config = load_config(path)
        scope = find_scope(config, f"env{args.envs - 1}", f"service-{args.services - 1}", "deploy")
        resolution = best_of(
            args.runs * 4, lambda: resolve(config, scope, lambda _: None, fetch_secrets=False)
        )  # type: ignore[arg-type,return-value]
        count = len(resolve(config, scope, lambda _: None, fetch_secrets=False))  # type: ignore[arg-type,return-value]

    exe = Path(sys.executable).parent / "shipline"
    help_time = best_of(
        args.runs, lambda: subprocess.run([str(exe), "--help"], capture_output=True, check=True)
    )
    python_start = best_of(
        args.runs, lambda: subprocess.run([sys.executable, "-c", "pass"], check=True)
    )

    report = {
        "size": {
            "services": args.services,
            "environments": args.envs,
            "variablesPerGroup": args.vars,
            "resolvedVariables": count,
        },
        "loadValidateSeconds": round(load, 4),
        "plainYamlParseSeconds": round(baseline, 4),
        "loadOverPlainParse": round(load / baseline, 2),
        "resolutionSeconds": round(resolution, 5),
        "helpSeconds": round(help_time, 4),
        "pythonStartSeconds": round(python_start, 4),
        "helpOverPythonStart": round(help_time / python_start, 2),
        "goals": {
            "loadValidate<1s": load < 1.0,
            "resolution<100ms": resolution < 0.1,
            "help<300ms": help_time < 0.3,
        },
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
