#!/usr/bin/env python
"""Open an HTML report in headless Chromium, check that its images rendered, save a screenshot.

    python scripts/screenshot_report.py report.html --out docs/report.png

Checks: Chromium's DOM dump holds the same number of <img> elements as the file, each
with a non-empty ``data:image/png;base64`` source that decodes to a PNG; the screenshot
is not blank (its pixel values vary). Needs the Debian package ``chromium``.
Exits non-zero when a check fails.
"""
from __future__ import annotations

import argparse
import base64
import os
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]


class _Imgs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.srcs: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.srcs.append(dict(attrs).get("src") or "")


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    sys.exit("screenshot_report: chromium not found (apt-get install -y chromium)")


def _run(args: list[str], profile: str) -> subprocess.CompletedProcess:
    return subprocess.run([_chromium(), *FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=180)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("report", help="the HTML report to open")
    ap.add_argument("--out", default="report.png", help="where to save the screenshot")
    ap.add_argument("--window-size", default="1200,3000")
    a = ap.parse_args(argv)
    url = "file://" + os.path.abspath(a.report)
    with open(a.report, encoding="utf-8") as fh:
        expected = fh.read().count("<img")
    with tempfile.TemporaryDirectory() as profile:
        dom = _run(["--dump-dom", url], profile).stdout
        parser = _Imgs()
        parser.feed(dom)
        problems = []
        if len(parser.srcs) != expected or expected == 0:
            problems.append(f"the DOM has {len(parser.srcs)} <img> elements, the file {expected}")
        for i, src in enumerate(parser.srcs):
            head, _, data = src.partition(",")
            if not head.startswith("data:image/png;base64") or not data:
                problems.append(f"image {i}: src is not a non-empty base64 PNG")
            elif base64.b64decode(data)[:8] != b"\x89PNG\r\n\x1a\n":
                problems.append(f"image {i}: data does not decode to a PNG")
        shot = os.path.abspath(a.out)
        os.makedirs(os.path.dirname(shot) or ".", exist_ok=True)
        _run([f"--screenshot={shot}", f"--window-size={a.window_size}", "--hide-scrollbars", url], profile)
    if not os.path.exists(shot):
        problems.append("chromium wrote no screenshot")
    else:
        from matplotlib.image import imread

        px = imread(shot)
        if float(px[..., :3].std()) < 0.01:
            problems.append("the screenshot is blank")
        print(f"screenshot {shot}: {px.shape[1]}x{px.shape[0]}, pixel std {float(px[..., :3].std()):.3f}")
    print(f"{len(parser.srcs)} images in the rendered DOM, all embedded PNGs" if not problems else "\n".join(problems))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
