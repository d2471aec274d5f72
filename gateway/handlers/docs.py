"""GET /api/openapi.json (the API as an OpenAPI 3.1 document, see gateway/openapi.py)
and GET /api/docs (the same, for people: Swagger UI, from the npm registry, served
from here like hls.js)."""

from __future__ import annotations

import aiohttp_jinja2
from aiohttp import web

from gateway.keys import OPENAPI, SWAGGER_UI_URL


async def openapi_json(request: web.Request) -> web.Response:
    return web.Response(body=request.app[OPENAPI], content_type="application/json",
                        headers={"Cache-Control": "public, max-age=300"})


async def api_docs(request: web.Request) -> web.Response:
    return aiohttp_jinja2.render_template("api_docs.html", request, {
        "swagger_ui_url": request.app[SWAGGER_UI_URL],
        "spec_url": str(request.app.router["openapi"].url_for()),
    })
