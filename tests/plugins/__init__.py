"""Plugins the tests install through entry points, as a third-party package would."""
