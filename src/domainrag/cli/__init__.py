"""The domainrag command line (typer): main.py assembles one module per command group."""
