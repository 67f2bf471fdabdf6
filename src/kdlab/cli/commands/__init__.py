"""The subcommands of `kdlab`: thin layers that compose, call the engine and write."""
