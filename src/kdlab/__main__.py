"""`python -m kdlab` is the `kdlab` command."""

from kdlab.cli import main

main()
