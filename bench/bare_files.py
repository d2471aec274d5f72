"""The ceiling for any aiohttp handler: the same files, from memory, no checks at all."""

import sys
from pathlib import Path

from aiohttp import web

root = Path(sys.argv[2])
bodies = {path.name: path.read_bytes() for path in root.iterdir() if path.is_file()}
types = {".ts": "video/mp2t", ".m3u8": "application/vnd.apple.mpegurl"}


async def serve(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    return web.Response(body=bodies[name], content_type=types[Path(name).suffix])


app = web.Application()
app.router.add_get("/{name}", serve)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
