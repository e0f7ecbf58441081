"""The `vitkit` command line: thin wrappers that parse arguments and call library functions."""

from vitkit.cli.main import main

__all__ = ["main"]
