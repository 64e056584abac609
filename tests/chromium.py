"""Debian's chromium driven by Playwright, for the console's browser tests: launching it, and
logging in to a served console as a supervisor does, name, password and a fresh code."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyotp
from playwright.sync_api import Browser, Page, sync_playwright

from console_site import PASSWORD, Clock, Server

CHROMIUM = "/usr/bin/chromium"
ARGS = [  # no autoplay switch: the browser's default policy, as a supervisor's has it
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
AUTOPLAY = "--autoplay-policy=no-user-gesture-required"  # sound without a click first
WAIT_MS = 15000


@contextmanager
def chromium(*more_args: str) -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), "chromium is installed by `bash .ci/setup --tests`"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=[*ARGS, *more_args])
        yield launched
        launched.close()


def log_in(page: Page, server: Server, totp: pyotp.TOTP, name: str) -> None:
    """Through the login form to the recordings page, with the user's code of a fresh step."""
    clock = server.service.clock
    assert isinstance(clock, Clock)
    clock.now += 30  # a fresh step for each login: a code is accepted once only
    submit_login(page, server, name, totp.at(clock.now))
    page.wait_for_url(f"{server.url}/recordings")


def submit_login(page: Page, server: Server, name: str, code: str) -> None:
    """The login form filled in with the user's password and `code`, and sent."""
    page.goto(f"{server.url}/login")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", PASSWORD)
    page.fill("input[name=code]", code)
    page.click("button[type=submit]")
