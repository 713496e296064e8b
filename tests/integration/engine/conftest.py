from tests.engine_harness import engine

__all__ = ["engine"]
