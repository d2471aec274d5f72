"""The ceiling for any aiohttp handler: the same files, from memory, no checks at all.

    bare_files.py PORT DIRECTORY [uvloop]

With `uvloop` (the `bench` extra), the same server on uvloop's event loop, to show
whether a faster loop would lift the ceiling. The same handler also answers at the
gate's own URL shapes (`SAME_REQUEST_ROUTES`, plain aiohttp routes), so a benchmark can
send it the very request the gate gets: a path token of ~170 characters costs any
handler its parsing and routing, checks or none. `bare_handler` is the same handler for
bench/bare_in_gateway.py, which runs it inside the gateway's own process.
"""

import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web


def bare_handler(root: Path) -> Callable[[web.Request], Awaitable[web.Response]]:
    bodies = {path.name: path.read_bytes() for path in root.iterdir() if path.is_file()}
    types = {".ts": "video/mp2t", ".m3u8": "application/vnd.apple.mpegurl"}

    async def serve(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        return web.Response(body=bodies[name], content_type=types[Path(name).suffix])

    return serve


# The SPEC's two forms of a gate URL: the token in the path, or in the gate cookie.
SAME_REQUEST_ROUTES = ("/hls/{stream_id}/t/{token}/{name}", "/hls/{stream_id}/{name}")

if __name__ == "__main__":
    app = web.Application()
    handler = bare_handler(Path(sys.argv[2]))
    for path in ("/{name}", *SAME_REQUEST_ROUTES):
        app.router.add_get(path, handler)
    loop_factory = None
    if sys.argv[3:] == ["uvloop"]:
        import uvloop

        loop_factory = uvloop.new_event_loop
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None,
                loop=loop_factory() if loop_factory else None)
