"""Debian's Chromium, headless, as the docs' scripts start it on a machine with no network.

Without the background-networking flags Chromium keeps trying to reach Google's hosts, and
those connections are refused one after another on a closed network.
"""

from __future__ import annotations

import shutil
import sys

FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    """The browser's path; exits 2 when it is not installed."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        print("chromium is not installed (Debian: apt-get install chromium)", file=sys.stderr)
        sys.exit(2)
    return found
