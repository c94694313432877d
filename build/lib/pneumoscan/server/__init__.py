"""The web application: an upload page and a JSON API over one loaded Predictor.

    >>> from pneumoscan.server import ServerSettings, create_app
    >>> app = create_app(ServerSettings(model="runs/first"))

``pneumoscan serve`` runs it with uvicorn; see :mod:`pneumoscan.server.app`.
"""

from __future__ import annotations

from pneumoscan.server.app import create_app
from pneumoscan.server.settings import ServerSettings

__all__ = ["ServerSettings", "create_app"]
