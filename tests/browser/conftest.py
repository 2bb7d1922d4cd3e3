"""Browser tests: the embedded suite started as a person starts it (`coordo run`, here on free
ports), driven through Debian's Chromium by Playwright, with axe-core checking each screen.

Nothing is skipped: without Chromium or axe-core the tests fail and say how to install them.
Screenshots go to var/screenshots/browser/ (COORDO_SCREENSHOTS_DIR to change it).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.suite import free_port_block, suite_environment

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("COORDO_CHROMIUM", "/usr/bin/chromium")
AXE = Path(__file__).resolve().parent / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS = Path(os.environ.get("COORDO_SCREENSHOTS_DIR") or ROOT / "var" / "screenshots" / "browser")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 375, "height": 812}
PASSWORD = "coordo-demo"


def _free_port() -> int:
    # Not port 0: the kernel would pick an ephemeral port a client connection may take next.
    return free_port_block(1)


@dataclass
class WebSuite:
    base_url: str
    log: Path


@pytest.fixture(scope="module")
def web_suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebSuite]:
    from aiosmtpd.controller import Controller

    class _Sink:
        async def handle_DATA(self, _server: Any, _session: Any, _envelope: Any) -> str:  # noqa: N802
            return "250 OK"

    run_dir = tmp_path_factory.mktemp("browser")
    smtp_port = _free_port()
    smtp = Controller(_Sink(), hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    base = free_port_block()
    env = {
        k: v for k, v in os.environ.items() if not (k.startswith("COORDO_") and k.endswith("_DATABASE_URL"))
    }
    env.update(suite_environment(base, str(run_dir / "var")))
    env.update(
        {
            "COORDO_BROKER_URL": "memory://",
            "COORDO_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
            "COORDO_WEB_PORT": str(_free_port()),
            "COORDO_VALIDATE_RESPONSES": "1",
        }
    )
    log = run_dir / "coordo.log"
    with open(log, "wb") as out:
        # The README's `make run` is `coordo run`: the same command, on ports of its own.
        process = subprocess.Popen(
            [sys.executable, "-m", "coordo.cli", "run"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=run_dir,
        )
    base_url = f"http://127.0.0.1:{base}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                pytest.fail(f"`coordo run` exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                ready = httpx.get(f"{base_url}/health/ready", timeout=2).status_code == 200
                if ready and httpx.get(f"{base_url}/auth/login", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the suite did not get ready in 90 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
        yield WebSuite(base_url=base_url, log=log)
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        smtp.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        pytest.fail(
            f"Chromium is missing at {CHROMIUM}: install it with "
            "`apt-get install -y chromium chromium-driver` (.ci/run does it in CI)"
        )
    if not AXE.exists():
        pytest.fail(f"axe-core is missing at {AXE}: run `npm ci --prefix tests/browser` (make test does it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@dataclass
class Screens:
    """Screenshots at desktop and phone sizes, and axe-core's serious/critical findings."""

    folder: Path
    violations: list[str] = field(default_factory=list)
    taken: list[Path] = field(default_factory=list)

    def check(self, page: Any, name: str) -> None:
        page.wait_for_load_state("load")
        page.add_script_tag(path=str(AXE))
        self.folder.mkdir(parents=True, exist_ok=True)
        for size_name, size in (("bureau", DESKTOP), ("telephone", PHONE)):
            page.set_viewport_size(size)
            self._axe(page, f"{name} ({size_name})")
            path = self.folder / f"{name}-{size_name}.png"
            page.screenshot(path=str(path), full_page=True)
            self.taken.append(path)
            if size is PHONE:
                # Responsive down to 375 px: nothing wider than the screen but scrolling tables.
                overflow = page.evaluate(
                    "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
                )
                if overflow > 0:
                    self.violations.append(f"{name}: the page is {overflow}px wider than a 375-px phone")
        page.set_viewport_size(DESKTOP)

    def _axe(self, page: Any, name: str) -> None:
        found = page.evaluate(
            """async () => {
                const result = await axe.run(document, {runOnly: {type: 'tag',
                    values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}});
                return result.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                    nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}));
            }"""
        )
        for violation in found:
            if violation["impact"] in ("serious", "critical"):
                self.violations.append(
                    f"{name} ({page.url}): {violation['id']} [{violation['impact']}] "
                    f"{violation['help']} — {violation['nodes']}"
                )


@pytest.fixture(scope="module")
def screens() -> Screens:
    return Screens(SCREENSHOTS)
