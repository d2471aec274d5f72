"""Keys delivery's handlers (`GATEWAY_DELIVERY=keys`), routed outside the middleware like
the gate's (media_routes.py): a CDN's misses and every viewer's keys come here.

- `/media/{streamId}/...`: playlists and encrypted segments for anyone, with the cache
  headers a CDN honours (gateway/delivery/service.py). No credential is read, and no
  cookie is ever set, so a shared cache may keep every answer. Query strings (LL-HLS
  `_HLS_` directives included) are ignored: the rewritten playlists carry no LL-HLS.
- `/keys/{streamId}/{keyId}` (cookie) and `/keys/{streamId}/t/{token}/{keyId}` (path
  token): the gate's own decision (`HlsGate.admit`, as for /hls/ and /gate/auth: token,
  stream, expiry, ended sessions, devices), then the key, from memory once known.
  Refused: 403 with `Cache-Control: private, no-store`, whatever the key.
"""

from __future__ import annotations

from aiohttp import web

from gateway.delivery.service import KEY_CACHE_CONTROL, KEY_CONTENT_TYPE, key_media_path
from gateway.delivery.urls import key_target
from gateway.errors import MediaNotFound
from gateway.gate.origins import bytes_response, media_headers
from gateway.handlers.common import media_request
from gateway.keys import GATE, KEYS_DELIVERY
from gateway.middlewares import failure_response

_KEY_HEADERS = media_headers(KEY_CONTENT_TYPE, KEY_CACHE_CONTROL)


async def media(request: web.Request) -> web.StreamResponse:
    try:
        answer = await request.app[KEYS_DELIVERY].media(request.match_info["stream_id"],
                                                        request.match_info["rest"])
        return bytes_response(request, answer.body, media_headers(
            answer.content_type, answer.cache_control, True))
    except Exception as exc:  # what the middleware would do, were it in the chain
        return failure_response(request, exc)


async def key(request: web.Request) -> web.StreamResponse:
    try:
        stream_id = request.match_info["stream_id"]
        target = key_target(request.match_info["rest"])
        if target is None:
            raise MediaNotFound()
        gate = request.app[GATE]
        asked = media_request(request, gate, target.token, stream_id,
                              key_media_path(target.key_id))
        gate.admit_now(asked) or await gate.admit(asked)
        body = await request.app[KEYS_DELIVERY].key(stream_id, target.key_id)
        return web.Response(body=body, headers=_KEY_HEADERS)
    except Exception as exc:
        return failure_response(request, exc)
