"""The OpenAPI document and the running app agree: every route is described, nothing
is described that isn't routed, with the same methods; the document is served, and a
page for people renders it with Swagger UI served from here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from aiohttp import web

from gateway.app import create_app
from gateway.errors import GatewayError
from gateway.i18n import error_message
from gateway.middlewares import CODE_BY_HTTP_STATUS, STATUS_BY_ERROR
from gateway.openapi import document, error_codes
from gateway.routes import SWAGGER_UI_DIR
from tests.conftest import IN_CI, ViewerClient, make_settings

# Routes for browsers and files, not the HTTP API: pages and static assets.
NOT_API = {"/", "/watch/{}", "/tickets", "/tickets/{}", "/static/{}", "/vendor/hls.min.js",
           "/vendor/swagger-ui/{}", "/vendor/uplot/{}"}
# The operator's console: pages and forms for people, signed in by cookie, not an API.
CONSOLE = "/admin"


def shape(path: str) -> str:
    """A path template with its parameter names dropped: /api/qr/{}.png."""
    return re.sub(r"\{[^}]*\}", "{}", path)


def routed(app: web.Application) -> dict[str, set[str]]:
    methods: dict[str, set[str]] = {}
    for route in app.router.routes():
        if route.method in ("HEAD", "*") or route.resource is None:
            continue
        info = route.resource.get_info()
        if "prefix" in info:  # a static directory
            path = info["prefix"].rstrip("/") + "/{}"
        else:
            path = info.get("path") or info["formatter"]
        methods.setdefault(shape(path), set()).add(route.method)
    return {path: found for path, found in methods.items()
            if path not in NOT_API and not path.startswith(CONSOLE)}


async def test_every_route_is_described_and_every_description_routed(
        viewer: ViewerClient) -> None:
    app = viewer.http.app
    assert app is not None
    described = {shape(path): {method.upper() for method in operations}
                 for path, operations in document(simulator_enabled=True)["paths"].items()}
    assert routed(app) == described


def test_keys_delivery_routes_are_described_when_it_is_on(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path, GATEWAY_DELIVERY="keys"))
    described = {shape(path): {method.upper() for method in operations}
                 for path, operations in document(simulator_enabled=True,
                                                  keys_delivery=True)["paths"].items()}
    assert routed(app) == described
    assert {"/media/{}/{}", "/keys/{}/{}"} <= set(described)


async def test_the_document_is_served_as_built(viewer: ViewerClient) -> None:
    async with viewer.http.get("/api/openapi.json") as response:
        assert response.status == 200
        served = await response.json()
    assert served == document(simulator_enabled=True)
    assert served["openapi"].startswith("3.1")
    assert "Set-Cookie" not in response.headers  # no viewer is made by reading docs


def test_every_error_code_the_domain_has_is_in_the_document() -> None:
    documented = set(error_codes())
    pending: list[type[GatewayError]] = [GatewayError]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls is not GatewayError:
            assert cls.code in documented, cls


def test_every_operation_lists_its_errors_in_the_error_form() -> None:
    for path, operations in document(simulator_enabled=True)["paths"].items():
        for method, operation in operations.items():
            statuses = set(operation["responses"])
            assert {"405", "503"} <= statuses, (method, path)
            for status, answer in operation["responses"].items():
                if int(status) >= 400 and status != "416":
                    schema = answer["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Error"}, (method, path)


async def test_people_get_a_page_that_draws_the_document(viewer: ViewerClient) -> None:
    if not (SWAGGER_UI_DIR / "swagger-ui-bundle.js").is_file():
        if IN_CI:
            pytest.fail("Swagger UI is required in CI (dev.py installs it with npm ci)")
        pytest.skip("NOT TESTED: Swagger UI is not installed (npm ci)")
    async with viewer.http.get("/api/docs") as response:
        assert response.status == 200
        page = await response.text()
        csp = response.headers["Content-Security-Policy"]
    assert 'data-spec="/api/openapi.json"' in page
    bundle = re.search(r'<script src="(/vendor/swagger-ui/[^"]+\.js)"', page)
    assert bundle is not None and "script-src 'self'" in csp
    async with viewer.http.get(bundle.group(1)) as response:
        assert response.status == 200
        assert "SwaggerUIBundle" in await response.text()


def test_each_error_example_is_an_answer_the_service_gives_at_that_status() -> None:
    # Swagger UI shows these; without them it showed `already_has_access` under every status.
    given_at: dict[str, set[int]] = {}
    for error, status in STATUS_BY_ERROR.items():
        given_at.setdefault(error.code, set()).add(status)
    for status, code in CODE_BY_HTTP_STATUS.items():
        given_at.setdefault(code, set()).add(status)
    seen: set[str] = set()
    for operations in document(simulator_enabled=True)["paths"].values():
        for operation in operations.values():
            for status, answer in operation["responses"].items():
                if int(status) < 400 or status == "416":
                    continue
                example = answer["content"]["application/json"]["example"]
                assert example["success"] is False and example["error"]
                assert int(status) in given_at[example["code"]], (status, example)
                assert example["error"] == error_message("en", example["code"], {
                    "field": "streamId", "retry_after_s": 60})
                seen.add(status)
    assert {"400", "403", "404", "405", "503"} <= seen


def test_every_operation_is_grouped_by_who_calls_it() -> None:
    """Swagger UI shows one group per tag: viewer, provider, operator, gate."""
    from gateway.openapi import TAGS, document

    spec = document(simulator_enabled=True)
    assert [tag["name"] for tag in spec["tags"]] == ["viewer", "provider", "operator", "gate"]
    grouped = {operation["operationId"]: operation["tags"]
               for operations in spec["paths"].values() for operation in operations.values()}
    assert all(len(tags) == 1 and tags[0] in TAGS for tags in grouped.values()), grouped
    assert grouped["paymentNotification"] == ["provider"]
    assert grouped["requestRefund"] == ["operator"]
    assert grouped["hlsToken"] == ["gate"]
