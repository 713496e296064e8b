"""`python -m shipline ...`: the command line, as the `shipline` script runs it."""

from shipline.cli.quick import run

run()
