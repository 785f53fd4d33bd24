"""``build_app(args)``: the one typed composition of Vigil's Serve application.

``ray_config.yaml`` names ``deployments.app:build_app`` as its import path; ``serve run
ray_config.yaml`` and ``vigil up`` both deploy it. Arguments not given in the config come from
the environment (:class:`vigil.settings.Settings`), read when the app is built, not at import.
(No `from __future__ import annotations` here: Serve reads the `AppArgs` annotation at run time.)
"""

from pydantic import BaseModel, ConfigDict
from ray.serve import Application

from deployments.ingress import Ingress
from vigil.settings import get_settings


class AppArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    database_url: str | None = None


def build_app(args: AppArgs) -> Application:
    settings = get_settings()
    database_url = args.database_url or settings.effective_database_url
    return Ingress.bind(database_url=database_url)  # type: ignore[attr-defined]
