"""The ``cadenza`` command line: one thin module per command group."""
