"""Render a drill report in headless Chromium, keep a screenshot, and check the timeline shows.

    apt-get install -y chromium                                # Debian's Chromium
    .venv/bin/failover demo --drill --json > /tmp/drill.json   # writes the report files
    .venv/bin/python docs/render_report.py \
        "$(jq -r .files.html /tmp/drill.json)" docs/drill-report.png

Exit 0 when the timeline's bars are on the screenshot (green pixels of passed phases in the
timeline's area), 1 when they are not, 2 when Chromium is missing.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from chromium import FLAGS, chromium_path
from PIL import Image

OK_GREEN = (46, 125, 50)  # report.OUTCOME_COLOURS["ok"]
WINDOW = (1100, 1400)


def screenshot(page: Path, out: Path) -> None:
    chromium = chromium_path()
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                chromium,
                "--headless",
                *FLAGS,
                "--hide-scrollbars",
                f"--user-data-dir={profile}",
                f"--window-size={WINDOW[0]},{WINDOW[1]}",
                f"--screenshot={out}",
                page.resolve().as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )


def timeline_bar_pixels(image: Path) -> int:
    """Green bar pixels in the band where the timeline is drawn (below the summary)."""
    with Image.open(image) as shot:
        rgb = shot.convert("RGB")
        width, height = rgb.size
        band = rgb.crop((0, int(height * 0.15), width, int(height * 0.35)))
        colours = band.getcolors(maxcolors=band.width * band.height) or []
        return sum(count for count, colour in colours if colour == OK_GREEN)


def main() -> None:
    page, out = Path(sys.argv[1]), Path(sys.argv[2])
    screenshot(page, out)
    pixels = timeline_bar_pixels(out)
    print(f"{out}: {pixels} timeline bar pixels")
    sys.exit(0 if pixels > 5000 else 1)


if __name__ == "__main__":
    main()
