"""The state store: runs, stages, steps, events, logs, votes and locks (SQLite or PostgreSQL)."""
