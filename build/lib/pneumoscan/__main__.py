"""``python -m pneumoscan`` (and ``torchrun -m pneumoscan``) run the CLI."""

from pneumoscan.cli.main import app

if __name__ == "__main__":
    app()
