"""The Serve ingress: the FastAPI app of :mod:`vigil.api` on a Serve deployment.

Thin on purpose: it builds the service in ``__init__`` (never at import) and hands it to the
routes through ``app.state``; everything else lives in ``vigil``.
"""

from __future__ import annotations

from ray import serve

from vigil.api import create_api, install_service
from vigil.service import VigilService

api = create_api()


@serve.deployment(name="Ingress")
@serve.ingress(api)
class Ingress:
    def __init__(self, database_url: str) -> None:
        self.service = VigilService(database_url)
        install_service(api, self.service)
