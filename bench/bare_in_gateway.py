"""The bare handler of bench/bare_files.py, inside the gateway's own process: the real
app (`create_app`, served by `gateway.serve` as `python -m gateway serve` does) with one
route more, /bare/{name}, outside the middleware and through the media door
(`media_routes.MediaDoor`) like the gate's own routes. Set up with
the gateway's environment plus BENCH_BARE_DIR (the directory to serve):

    BENCH_BARE_DIR=media GATEWAY_STREAMS=... .venv/bin/python -m bench.bare_in_gateway

So `bench/gate_vs_nginx.py` can tell what the gate's checks cost from what running in
the gateway's process costs any handler (a bigger heap, the connection guard, more
routes): the same handler, with no checks at all, in both processes.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from bench.bare_files import bare_handler
from gateway.app import create_app
from gateway.logs import configure_logging
from gateway.media_routes import MediaResource
from gateway.serve import serve
from gateway.settings import Settings

BARE_PREFIX = "/bare"


def main() -> None:
    settings = Settings.from_env()
    app = create_app(settings)
    app.router.register_resource(MediaResource(
        BARE_PREFIX + "/{name}", name="bench-bare",
        handler=bare_handler(Path(os.environ["BENCH_BARE_DIR"]))))
    configure_logging(settings.log_level, settings.log_format)
    asyncio.run(serve(app, settings))


if __name__ == "__main__":
    main()
