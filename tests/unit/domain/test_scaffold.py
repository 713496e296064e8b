"""`shipline init`'s start-command guesses: a service's own command where something in its
folder says how it starts and that it listens on PORT; none (the demo workload) otherwise."""

from __future__ import annotations

import pytest
import yaml

from shipline.domain.scaffold import Guess, guess_start, render_config

PY_PORT = "import os\nif __name__ == '__main__':\n    serve(int(os.environ['PORT']))\n"


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"Procfile": "release: migrate\nweb: gunicorn app:app -b :$PORT\n"},
         (["sh", "-c", "gunicorn app:app -b :$PORT"], "Procfile")),
        ({"package.json": '{"scripts": {"start": "node main.js", "test": "jest"}}'},
         (["npm", "start"], "package.json")),
        ({"package.json": '{"scripts": {"test": "jest"}}'}, (None, None)),
        ({"package.json": "not json"}, (None, None)),
        ({"package.json": '["a list"]'}, (None, None)),
        ({"pyproject.toml": "", "main.py": PY_PORT}, (["python3", "main.py"], "main.py")),
        ({"app.py": PY_PORT, "main.py": PY_PORT}, (["python3", "app.py"], "app.py")),
        ({"app.py": "print('no port, no main')\n"}, (None, None)),
        ({"app.py": "if __name__ == '__main__':\n    serve(8000)\n"}, (None, None)),
        ({"go.mod": "module x\n", "main.go": 'port := os.Getenv("PORT")\n'},
         (["go", "run", "."], "main.go")),
        ({"go.mod": "module x\n", "main.go": "http.ListenAndServe(\":8080\", nil)\n"},
         (None, None)),
        ({"Procfile": "web: bin/start\n", "package.json": '{"scripts": {"start": "x"}}'},
         (["sh", "-c", "bin/start"], "Procfile")),
        ({}, (None, None)),
    ],
)  # fmt: skip
def test_start_command_where_known(
    files: dict[str, str], expected: tuple[list[str] | None, str | None]
) -> None:
    assert guess_start(files) == expected


def test_the_written_configuration_carries_the_command_as_data() -> None:
    guesses = [
        Guess("web", "web", "node", 3000, "/health", [], ["sh", "-c", 'node "a b.js" -p $PORT'],
              "Procfile"),
        Guess("root", "", "python", 8000, "/health", ["port"], ["python3", "app.py"], "app.py"),
        Guess("plain", "plain", "go", 8080, "/health"),
    ]  # fmt: skip
    written = yaml.safe_load(render_config("p", guesses, []))
    services = {s["name"]: s for s in written["services"]}
    assert services["web"]["start"] == {"command": ["sh", "-c", 'node "a b.js" -p $PORT']}
    assert services["root"]["start"] == {"command": ["python3", "app.py"], "workdir": "."}
    assert "start" not in services["plain"]
