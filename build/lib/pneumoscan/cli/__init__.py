"""The ``pneumoscan`` command line: one module per command, assembled in :mod:`main`."""
