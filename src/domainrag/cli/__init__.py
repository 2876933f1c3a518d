"""The ``domainrag`` command line (typer)."""
