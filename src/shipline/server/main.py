"""The server's application factory, for uvicorn (`shipline server` sets the environment)."""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI

from shipline.engine.workspace import SERVER_CONFIG_ENV, Workspace
from shipline.server.app import create_app


def app_from_environment() -> FastAPI:
    """The app for the configuration `shipline server` found."""
    return create_app(Workspace.open(Path(os.environ[SERVER_CONFIG_ENV])))
