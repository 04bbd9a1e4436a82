"""``restore serve``'s API and its safety rules, through the real app in-process (FastAPI's TestClient).

The browser test (``test_serve_browser.py``) covers the page; these cover what a page cannot easily
show: the limits (upload size, decompression bombs, files per request), requests from other sites and
other host names, ids that try to be paths, pickles that would run code, cancelling a running job, the
catalogue's download status, and option errors.
"""

from __future__ import annotations

import io
import os
import time
import zipfile
from pathlib import Path

import pytest
import torch
from PIL import Image

pytest.importorskip("fastapi", reason="restorekit[serve] is not installed")
pytest.importorskip("httpx", reason="the test client needs httpx (restorekit[dev])")

from fastapi.testclient import TestClient  # noqa: E402

from restorekit.data.images import read_picture, write_picture  # noqa: E402
from restorekit.plugins import registry  # noqa: E402
from restorekit.serve.app import ServeSettings, create_app  # noqa: E402
from restorekit.weights import WeightInfo, save_weights  # noqa: E402

OK = {"X-Restorekit": "1"}


def png_bytes(width: int, height: int, seed: int = 0, *, smooth: bool = False) -> bytes:
    gen = torch.Generator().manual_seed(seed)
    pixels = (torch.rand(height, width, 3, generator=gen) * 255).byte().numpy()
    if smooth:  # compresses well: large images under the small upload limit of these tests
        pixels[:] = (torch.arange(width) % 256).byte().numpy()[None, :, None]
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    args = {"num_features": 8, "num_blocks": 1, "scale": 2}
    net = registry("generators").build("srresnet", **args)
    info = WeightInfo(name="srresnet", args=args, task="super_resolution", scale=2, plugin="srgan")
    return save_weights(net, tmp_path_factory.mktemp("serve-api") / "tiny.safetensors", info)


@pytest.fixture()
def client(tmp_path: Path):
    settings = ServeSettings(
        workdir=tmp_path / "served", max_upload_mb=0.2, max_weights_mb=2, max_files=3, max_pixels=250_000
    )
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as test_client:
        yield test_client


def upload_model(client: TestClient, weights: Path) -> str:
    response = client.post("/api/weights", headers=OK, files={"file": ("tiny.safetensors", weights.read_bytes())})
    assert response.status_code == 200, response.text
    return response.json()["id"]


def wait(client: TestClient, job_id: str, statuses: tuple[str, ...] = ("done", "error", "cancelled")) -> dict:
    for _ in range(3000):
        job = next(j for j in client.get("/api/jobs").json()["jobs"] if j["id"] == job_id)
        if job["status"] in statuses:
            return job
        time.sleep(0.01)
    raise AssertionError(f"job {job_id} stuck in {job['status']}")


def test_a_job_writes_what_restore_picture_writes_and_downloads_one_or_all(
    client, weights: Path, tmp_path: Path
) -> None:
    model = upload_model(client, weights)
    data = png_bytes(40, 30)
    response = client.post(
        "/api/jobs",
        headers=OK,
        files=[("files", ("../../evil name.png", data))],
        data={"model": model, "tile": "0", "format": "webp", "quality": "90"},
    )
    assert response.status_code == 200, response.text
    job = wait(client, response.json()["jobs"][0]["id"])
    assert job["status"] == "done", job
    assert job["name"] == "evil-name.png"  # only the last component, made harmless
    assert job["download_name"] == "evil-name_tiny.webp"
    served = tmp_path / "served"
    assert not (tmp_path / "evil name.png").exists() and not any(served.rglob("*evil*"))

    download = client.get(f"/api/jobs/{job['id']}/download")
    assert download.headers["content-disposition"] == 'attachment; filename="evil-name_tiny.webp"'
    source = tmp_path / "in.png"
    source.write_bytes(data)
    import restorekit

    expected = tmp_path / "expected.webp"
    restored = restorekit.load_model(str(weights), tile=0).restore_picture(read_picture(source))
    write_picture(restored, expected, format="WEBP", quality=90)
    assert download.content == expected.read_bytes()

    archive = client.get("/api/download.zip")
    with zipfile.ZipFile(io.BytesIO(archive.content)) as z:
        assert z.read("evil-name_tiny.webp") == expected.read_bytes()
    # Previews for the slider: WebP is shown as it is.
    assert client.get(f"/api/jobs/{job['id']}/output").content == expected.read_bytes()


def test_limits_bombs_and_bad_options_are_one_clear_message(client, weights: Path) -> None:
    model = upload_model(client, weights)
    too_big = os.urandom(300_000)  # over the 0.2 MB image limit, under the request limit
    response = client.post("/api/jobs", headers=OK, files=[("files", ("big.png", too_big))], data={"model": model})
    job = response.json()["jobs"][0]
    assert job["status"] == "error" and "big.png: larger than the upload limit of 0 MB" in job["message"]
    # A header declaring 2000×2000 pixels (a decompression bomb for this server's 250 000 limit).
    bomb = io.BytesIO()
    Image.new("L", (2000, 2000)).save(bomb, "PNG")
    response = client.post(
        "/api/jobs", headers=OK, files=[("files", ("bomb.png", bomb.getvalue()))], data={"model": model}
    )
    job = response.json()["jobs"][0]
    assert job["status"] == "error"
    assert "bomb.png: 2000×2000 = 4000000 pixels is over the limit of 250000" in job["message"]
    # The whole request past the limit is cut off before it is parsed.
    huge = client.post("/api/weights", headers=OK, files={"file": ("x.safetensors", b"\0" * 4_000_000)})
    assert huge.status_code == 413 and "limit" in huge.json()["error"]
    many = client.post(
        "/api/jobs", headers=OK, files=[("files", (f"{i}.png", b"x")) for i in range(5)], data={"model": model}
    )
    assert many.status_code == 400 and "Too many files" in many.json()["error"]
    # Options a network cannot run with, and unknown models.
    small_tile = client.post(
        "/api/jobs", headers=OK, files=[("files", ("a.png", png_bytes(8, 8)))], data={"model": model, "tile": "20"}
    )
    assert small_tile.status_code == 400 and "tile" in small_tile.json()["error"]
    assert (
        client.post(
            "/api/jobs", headers=OK, files=[("files", ("a.png", b"x"))], data={"model": "store:../x"}
        ).status_code
        == 400
    )
    missing = client.post(
        "/api/jobs", headers=OK, files=[("files", ("a.png", png_bytes(8, 8)))], data={"model": "store:nope"}
    )
    job = wait(client, missing.json()["jobs"][0]["id"])
    assert job["status"] == "error" and "no model named 'nope'" in job["message"]


def test_other_sites_hosts_and_path_like_ids_are_refused(client, weights: Path) -> None:
    forged = client.post("/api/weights", files={"file": ("tiny.safetensors", weights.read_bytes())})
    assert forged.status_code == 403 and "x-restorekit" in forged.json()["error"]
    assert client.get("/api/models", headers={"host": "attacker.example"}).status_code == 400  # DNS rebinding
    for path in ("/api/jobs/..%2F..%2Fetc%2Fpasswd/download", "/api/jobs/../../etc/passwd/input", "/static/../app.py"):
        response = client.get(path)
        assert response.status_code == 404 and b"root:" not in response.content, path
    assert client.get("/").headers["content-security-policy"].startswith("default-src 'self'")


def test_pickled_code_in_an_uploaded_pth_never_runs(client, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    buffer = io.BytesIO()
    torch.save({"params": {"conv.weight": torch.zeros(1)}, "evil": Payload()}, buffer)
    response = client.post("/api/weights", headers=OK, files={"file": ("evil.pth", buffer.getvalue())})
    assert response.status_code == 400
    assert response.json()["error"].startswith("evil.pth: ")
    assert not marker.exists()
    assert client.get("/api/models").json()["uploaded"] == []


def test_cancelling_a_running_job_stops_it_and_the_worker_goes_on(client, weights: Path) -> None:
    model = upload_model(client, weights)
    files = [("files", ("large.png", png_bytes(450, 450, smooth=True))), ("files", ("next.png", png_bytes(20, 20)))]
    # 450×450 in 128-pixel tiles (which share 3 × 32 pixels): many batches, time to cancel between them.
    jobs = client.post("/api/jobs", headers=OK, files=files, data={"model": model, "tile": "128"}).json()["jobs"]
    large, following = jobs[0]["id"], jobs[1]["id"]
    running = wait(client, large, ("running", "done", "error"))
    assert running["status"] == "running", running
    for _ in range(3000):
        running = next(j for j in client.get("/api/jobs").json()["jobs"] if j["id"] == large)
        if running["done_tiles"] or running["status"] != "running":
            break
        time.sleep(0.005)
    assert client.post(f"/api/jobs/{large}/cancel", headers=OK).status_code == 200
    stopped = wait(client, large)
    assert stopped["status"] == "cancelled", stopped
    assert stopped["total_tiles"] > 16 and stopped["done_tiles"] < stopped["total_tiles"]
    assert client.get(f"/api/jobs/{large}/download").status_code == 409
    assert wait(client, following)["status"] == "done"


def test_models_list_the_catalogue_with_download_status(client) -> None:
    models = {m["label"]: m for m in client.get("/api/models").json()["models"]}
    entry = models["realesrgan-x4plus"]
    assert entry["group"] == "catalogue" and entry["status"] == "available"
    assert "rrdbnet ×4" in entry["detail"] and "BSD-3-Clause" in entry["detail"]
