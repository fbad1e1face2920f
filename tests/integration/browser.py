"""A headless Chromium for the browser test: Debian's `chromium` and `chromium-driver`.

Found on PATH, or installed with apt-get when running as root (CI and the project's
machines are), so a fresh clone needs no manual step. Playwright's own browser download
cannot work where only package registries are reachable; Debian's packages can.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

PACKAGES = ("chromium", "chromium-driver")
INSTALL_TIMEOUT = 900


@dataclass(frozen=True)
class Browser:
    """Where the browser and its WebDriver are."""

    chromium: str
    driver: str


def find_browser() -> Browser | None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return Browser(chromium, driver) if chromium and driver else None


def ensure_browser() -> tuple[Browser | None, str]:
    """The browser, installing Debian's packages if missing; else None and why not."""
    if found := find_browser():
        return found, "found on PATH"
    if not shutil.which("apt-get"):
        return None, "chromium/chromedriver not on PATH and no apt-get to install them"
    if os.geteuid() != 0:
        return None, ("chromium/chromedriver not on PATH and not root, so cannot run "
                      f"`apt-get install -y {' '.join(PACKAGES)}`")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-q"],
                 ["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES]):
        try:
            done = subprocess.run(argv, env=env, capture_output=True, text=True,
                                  timeout=INSTALL_TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            return None, f"`{' '.join(argv)}` took over {INSTALL_TIMEOUT}s"
        if done.returncode != 0:
            return None, f"`{' '.join(argv)}` failed: {done.stderr.strip()[-500:]}"
    found = find_browser()
    return found, "installed with apt-get" if found else "apt-get ran but no chromedriver on PATH"
