"""The API's page for people (/api/docs) in the system Chromium: Swagger UI, served from
here under the page's Content-Security-Policy, draws every operation of the document
and can show one's answers. Screenshot: test-output/screenshots/api-docs.png."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.routes import SWAGGER_UI_DIR
from tests.browser.conftest import page_problems
from tests.browser.test_watch_page import shot
from tests.conftest import IN_CI

pytestmark = pytest.mark.browser
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


async def test_the_page_draws_every_operation_of_the_document(browser: Any, site: str) -> None:
    if not (SWAGGER_UI_DIR / "swagger-ui-bundle.js").is_file():
        message = "Swagger UI is not installed (npm ci)"
        if IN_CI:
            pytest.fail(f"{message}: .ci/run installs it")
        pytest.skip(f"NOT TESTED: {message}")
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    problems = page_problems(page)
    await page.goto(f"{site}/api/docs")
    await page.locator(".opblock").first.wait_for()

    drawn = set(await page.locator(".opblock").evaluate_all(
        """blocks => blocks.map(block =>
             block.querySelector('.opblock-summary-method').textContent.toLowerCase() + ' '
             + block.querySelector('.opblock-summary-path').dataset.path)"""))
    served = await (await context.request.get(f"{site}/api/openapi.json")).json()
    expected = {f"{method} {path}" for path, operations in served["paths"].items()
                for method in operations if method in HTTP_METHODS}
    assert len(expected) > 10 and drawn == expected
    assert await page.locator(".info .title").first.inner_text() != ""

    # Opening an operation shows its answers, the SPEC's error form among them.
    check_access = page.locator(".opblock", has=page.locator(
        '.opblock-summary-path[data-path="/api/check-access"]'))
    await check_access.locator(".opblock-summary").first.click()
    await check_access.locator(".responses-table").first.wait_for()
    answers = await check_access.locator(".responses-table .response-col_status").all_inner_texts()
    assert {"200", "403"} <= {answer.strip() for answer in answers}
    await shot(page, "api-docs")
    assert problems == []
    await context.close()
