"""Run an app under uvicorn on APP_HOST:APP_PORT (the sidecar's --app-port)."""

from __future__ import annotations

import argparse
import os

import uvicorn


def serve(app_id: str, factory: str, default_port: int) -> None:
    """Entry point of `python -m <service>`."""
    parser = argparse.ArgumentParser(
        prog=f"python -m {app_id}",
        description=f"Run the {app_id} service (normally under a Dapr sidecar: see dapr.yaml).",
    )
    parser.add_argument("--host", default=os.environ.get("APP_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("APP_PORT", default_port)))
    args = parser.parse_args()
    uvicorn.run(
        factory,
        factory=True,
        host=args.host,
        port=args.port,
        log_level="info",
        access_log=False,
        # uvicorn's lines go through the app's own handler (plumbing.logs), in its format, once.
        log_config=None,
    )
