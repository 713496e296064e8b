"""The shipline server: REST API, web dashboard and inbound hooks (FastAPI on uvicorn)."""
