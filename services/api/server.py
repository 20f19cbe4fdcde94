"""Run the gateway with uvicorn (``clipsearch serve``)."""

from __future__ import annotations

import uvicorn

from clipsearch.settings import Settings
from services.api.app import create_app


def serve(settings: Settings) -> None:
    app = create_app(settings)
    uvicorn.run(app, host=settings.host, port=settings.api_port, log_level="info",
                access_log=False)
