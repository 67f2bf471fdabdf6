"""`python -m kdlab` is the `kdlab` command."""

from kdlab.cli.main import main

main()
