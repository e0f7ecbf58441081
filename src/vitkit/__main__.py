"""`python -m vitkit ...` is the `vitkit` command (torchrun uses this form)."""

from vitkit.cli import main

main()
