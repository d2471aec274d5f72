"""The system Chromium, driven by Playwright, for every browser test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from gateway.app import create_app
from gateway.clock import system_clock_ms
from tests.conftest import API_KEY, make_settings, require_tool
from tests.providers.fake_midtrans import FakeMidtrans

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


async def failing_provider_site(tmp_path: Path,
                                aiohttp_server: Callable[..., Awaitable[TestServer]]
                                ) -> tuple[str, FakeMidtrans]:
    """The app in front of a Midtrans that answers every call 500 (until a test clears
    `failure`): its base URL, and the fake."""
    key = "SB-Mid-server-BROWSER"
    fake = FakeMidtrans(key, system_clock_ms)
    fake.failure = "500"
    provider = await aiohttp_server(fake.app)
    settings = replace(make_settings(tmp_path), provider="midtrans",
                       provider_url=str(provider.make_url("")).rstrip("/"),
                       provider_credentials={"GATEWAY_MIDTRANS_SERVER_KEY": key})
    return str((await aiohttp_server(create_app(settings))).make_url("")).rstrip("/"), fake


async def signed_in_console(browser: Any, site: str, **context: Any) -> tuple[Any, Any]:
    """A browser context (`context`: Playwright's options) signed in to the console,
    on its dashboard."""
    browser_context = await browser.new_context(**context)
    page = await browser_context.new_page()
    await page.goto(f"{site}/admin")
    await page.fill("#name", "Sari")
    await page.fill("#key", API_KEY)
    await page.click("button[type=submit]")
    await page.locator("#takings-today").wait_for()
    return browser_context, page
