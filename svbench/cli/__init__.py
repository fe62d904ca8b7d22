"""Command line: one module per subcommand; each only parses arguments and calls public functions."""
