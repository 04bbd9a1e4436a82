"""``restore serve`` in a real browser: Debian's headless Chromium driven by Playwright.

The server is a real ``restore serve`` process on 127.0.0.1 and a free port (``--port 0``), always stopped.
Through the page: upload a tiny random-weights model, pick an image, restore it in tiles, drag the
before/after slider, switch between fit and 1:1, download the result and the zip of all results — and
the downloaded file equals ``restore apply``'s output bit for bit; a corrupt image and a corrupt weight
file each give a message on the page while the server keeps serving.

Set ``RESTOREKIT_SCREENSHOTS=DIR`` to keep the page's screenshots there.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TILE = "100"  # the 150×100 photo is restored in several tiles (default overlap 32)

playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright (restorekit[dev]) is not installed")
pytest.importorskip("fastapi", reason="restorekit[serve] is not installed")
if not CHROMIUM.is_file():
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)

from restorekit.plugins import registry  # noqa: E402
from restorekit.weights import WeightInfo, save_weights  # noqa: E402


def save_tiny_sr(path: Path) -> Path:
    torch.manual_seed(0)
    args = {"num_features": 8, "num_blocks": 1, "scale": 2}
    net = registry("generators").build("srresnet", **args)
    return save_weights(
        net, path, WeightInfo(name="srresnet", args=args, task="super_resolution", scale=2, plugin="srgan")
    )


def photo(path: Path, width: int = 150, height: int = 100) -> Path:
    rng = np.random.default_rng(1)
    yy, xx = np.meshgrid(np.linspace(0, 1, height), np.linspace(0, 1, width), indexing="ij")
    smooth = np.stack([xx, yy, (xx + yy) / 2], axis=-1)
    Image.fromarray((np.clip(0.8 * smooth + 0.2 * rng.random((height, width, 3)), 0, 1) * 255).astype(np.uint8)).save(
        path
    )
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("serve-browser")
    good = photo(root / "garden.png")
    corrupt = root / "corrupt.png"
    corrupt.write_bytes(good.read_bytes()[:300])  # a valid header, then the pixels stop
    bad_weights = root / "broken.pth"
    bad_weights.write_bytes(b"\x80\x04not really a checkpoint" * 20)
    return {
        "root": root,
        "weights": save_tiny_sr(root / "tiny-x2.safetensors"),
        "good": good,
        "corrupt": corrupt,
        "bad_weights": bad_weights,
        "env": dict(os.environ, RESTOREKIT_HOME=str(root / "home")),
    }


@pytest.fixture(scope="module")
def server(files: dict):
    """A real ``restore serve`` on 127.0.0.1, on a port the OS picks; stopped however the tests end."""
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "restorekit.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--workdir",
            str(files["root"] / "served"),
        ],
        env=files["env"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    found: list[str] = []
    lines: list[str] = []

    def read() -> None:
        assert child.stderr is not None
        for line in child.stderr:
            lines.append(line)
            match = re.search(r"serving on (http://127\.0\.0\.1:\d+/)", line)
            if match and not found:
                found.append(match.group(1))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        for _ in range(1200):
            if found or child.poll() is not None:
                break
            reader.join(0.1)
        assert found, f"restore serve did not start: {''.join(lines)}"
        yield found[0]
    finally:
        child.terminate()
        try:
            child.wait(timeout=20)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    assert "Traceback" not in "".join(lines), "".join(lines)


@pytest.fixture(scope="module")
def page(server: str):
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1100, "height": 760}, accept_downloads=True)
            tab = context.new_page()
            tab.set_default_timeout(120_000)
            tab.goto(server)
            yield tab
        finally:
            browser.close()


def screenshot(page, name: str, tmp_path: Path) -> Path:
    path = tmp_path / name
    page.screenshot(path=str(path))
    keep = os.environ.get("RESTOREKIT_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(keep) / name)
    return path


def test_restore_in_the_page_equals_restore_apply(page, files: dict, tmp_path: Path) -> None:
    page.set_input_files("#weights", str(files["weights"]))
    page.wait_for_selector("#weights-status.ok")
    assert "srresnet ×2" in page.inner_text("#weights-status")
    assert page.eval_on_selector("#model", "m => m.value").startswith("upload:")

    page.fill("#tile", TILE)
    page.set_input_files("#files", str(files["good"]))
    assert page.inner_text("#picked") == "garden.png"
    page.click("#run")
    page.wait_for_selector("#jobs li.done")
    assert "done 300×200" in page.inner_text("#jobs li.done .status")
    page.wait_for_selector("#viewer:not([hidden])")
    page.wait_for_selector("#after[src]")
    # The result is shown (decoded by the browser), at the size the server reports.
    assert page.eval_on_selector("#after", "img => img.decode().then(() => img.naturalWidth)") == 300

    # Drag the slider from the middle to a quarter of the image.
    box = page.locator("#stage").bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] / 2, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.4, y, steps=4)
    page.mouse.move(box["x"] + box["width"] * 0.25, y, steps=4)
    page.mouse.up()
    assert abs(int(page.get_attribute("#handle", "aria-valuenow")) - 25) <= 1
    clip = page.eval_on_selector("#after", "e => e.style.clipPath")
    assert re.fullmatch(r"inset\(0(px)? 0(px)? 0(px)? 2[45](\.\d+)?%\)", clip), clip
    fit_width = page.locator("#stage").bounding_box()["width"]
    assert fit_width > 300  # fit to the window: enlarged to fill it
    screenshot(page, "serve-fit.png", tmp_path)
    page.click("#zoom-1")
    one_to_one = page.locator("#stage").bounding_box()
    assert (round(one_to_one["width"]), round(one_to_one["height"])) == (300, 200)  # output pixels 1:1
    screenshot(page, "serve-1to1.png", tmp_path)
    page.click("#zoom-fit")

    with page.expect_download() as download:
        page.click("#jobs li.done a.download")
    assert download.value.suggested_filename == "garden_tiny-x2.png"
    downloaded = tmp_path / "downloaded.png"
    download.value.save_as(str(downloaded))

    applied = tmp_path / "applied"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "restorekit.cli",
            "apply",
            "--model",
            str(files["weights"]),
            str(files["good"]),
            "-o",
            str(applied),
            "--tile",
            TILE,
        ],
        capture_output=True,
        text=True,
        env=files["env"],
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert downloaded.read_bytes() == (applied / "garden.png").read_bytes()

    with page.expect_download() as archive:
        page.click("#download-all")
    zipped = tmp_path / "all.zip"
    archive.value.save_as(str(zipped))
    with zipfile.ZipFile(zipped) as z:
        assert z.namelist() == ["garden_tiny-x2.png"]
        assert z.read("garden_tiny-x2.png") == downloaded.read_bytes()


def test_corrupt_image_and_weights_show_an_error_and_the_server_keeps_serving(
    page, files: dict, tmp_path: Path
) -> None:
    page.set_input_files("#files", str(files["corrupt"]))
    page.click("#run")
    page.wait_for_selector("#jobs li.error")
    message = page.inner_text("#jobs li.error .status")
    assert "corrupt.png" in message and "truncated or corrupt" in message, message
    assert str(files["root"]) not in message  # the server's own paths are not shown

    page.set_input_files("#weights", str(files["bad_weights"]))
    page.wait_for_selector("#weights-status.error")
    assert page.inner_text("#weights-status").startswith("broken.pth: ")
    screenshot(page, "serve-errors.png", tmp_path)

    # Still serving: another image goes through with the model uploaded earlier.
    page.set_input_files("#files", str(files["good"]))
    page.click("#run")
    page.locator("#jobs li.done").nth(1).wait_for()
    assert page.locator("#jobs li").count() == 3
