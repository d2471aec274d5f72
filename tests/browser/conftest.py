"""The system Chromium, driven by Playwright, for every browser test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from gateway.app import create_app
from tests.conftest import make_settings, require_tool

# What the machine notes say a headless Chromium needs here: no sandbox as root, and no
# background calls to Google's hosts, which this network refuses.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    chromium = require_tool("chromium")
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium, headless=True,
                                                    args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


def page_problems(page: Any) -> list[str]:
    """Every script error on `page` from now on, and every console error (where a script
    or style the CSP refuses shows up), as they happen."""
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("console", lambda message: problems.append(message.text)
            if message.type == "error" else None)
    return problems


@pytest.fixture
async def site(tmp_path: Path, aiohttp_server: Callable[..., Awaitable[TestServer]]) -> str:
    """The app on the default settings, served; its base URL."""
    server = await aiohttp_server(create_app(make_settings(tmp_path)))
    return str(server.make_url("/")).rstrip("/")
