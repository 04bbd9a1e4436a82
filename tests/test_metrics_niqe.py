"""NIQE reproduces MATLAB (baboon = 5.7296) and keeps its values on Set5/Set14; the pristine model is read
from the shared data, or fetched (hash-checked) through the download path.

Pinned values: Y channel (BT.601, integer as MATLAB's rgb2ycbcr gives it), HR cropped to a multiple of 4
as the SR protocol does, 4 border pixels shaved; "bicubic" is MATLAB's bicubic x4 upscaling of the shipped
``LR_bicubic/X4`` files, i.e. ``restore eval --model bicubic --lr-dir ... --metrics niqe``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from restorekit.data.images import load_rgb
from restorekit.metrics import niqe as niqe_module
from restorekit.metrics.niqe import NIQEError, niqe, pristine_model

SET5 = {  # image: (HR, bicubic x4)
    "baby": (3.322233144144404, 7.498415334263293),
    "bird": (5.283070512687115, 8.104778555075933),
    "butterfly": (5.205003912454121, 9.411751640066848),
    "head": (8.740748126631253, 9.90109382323544),
    "woman": (4.635140520466935, 7.345144844078162),
}
SET14 = {
    "baboon": (5.9892463705441505, 7.524876358185397),
    "barbara": (4.6558293013555305, 7.113426270197602),
    "bridge": (2.52118266201199, 7.370460909468729),
    "coastguard": (5.8805621451382795, 7.482968731512697),
    "comic": (4.332514286313888, 7.248606089788003),
    "face": (8.75470142790022, 9.764458561915108),
    "flowers": (2.9453039470419444, 7.579961173914079),
    "foreman": (5.987974852877004, 7.877601314560046),
    "lenna": (5.1675626149161555, 7.494050847650123),
    "man": (3.662973799574046, 7.031822996456445),
    "monarch": (3.4633936151376923, 7.534548874533845),
    "pepper": (7.054359916543752, 7.546117563977902),
    "ppt3": (5.223185844409193, 7.406705053720568),
    "zebra": (3.268571774165199, 7.569511061274068),
}
MEANS = {"Set5": (5.437239243276766, 8.452236839343936), "Set14": (4.921954468423502, 7.6103654147967585)}
# Same code, same inputs: a change beyond float noise is a change of the algorithm.
TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def model(shared_data: Path):
    return pristine_model(shared_data / "metrics" / "niqe_pris_params.npz")


def test_baboon_reproduces_matlab(model, shared_data):
    """MATLAB: NIQE(baboon.png, Y, no crop) = 5.72957 (documented by BasicSR); float64 statistics give 5.72996."""
    baboon = load_rgb(shared_data / "sr-bench" / "Set14" / "HR" / "baboon.png")
    value = float(niqe(baboon, model=model))
    assert round(value, 4) == 5.7296
    assert value == pytest.approx(5.72957338, abs=5e-6)


def _pinned(shared_data: Path, name: str, table: dict, monkeypatch) -> None:
    from restorekit.evaluation.report import evaluate_report

    # The metric registry's niqe reads the pristine model from the download folder: put the shared
    # file there by link (what a user downloading it by hand does), offline.
    downloads = Path(__import__("restorekit.store", fromlist=["downloads_dir"]).downloads_dir())
    downloads.mkdir(parents=True, exist_ok=True)
    (downloads / niqe_module.NIQE_PARAMS_FILE).symlink_to(shared_data / "metrics" / niqe_module.NIQE_PARAMS_FILE)
    root = shared_data / "sr-bench" / name
    report = evaluate_report(["bicubic"], root / "HR", lr_dir=root / "LR_bicubic", scale=4, metrics=["niqe"],
                             with_input=False)
    result, hr = report.results[0], report.collector.reference_scores
    assert [image.name for image in result.images] == sorted(table)
    for image in result.images:
        hr_value, bicubic_value = table[image.name]
        assert hr[image.name]["niqe"] == pytest.approx(hr_value, abs=TOLERANCE), image.name
        assert image.metrics["niqe"] == pytest.approx(bicubic_value, abs=TOLERANCE), image.name
    mean_hr = sum(v["niqe"] for v in hr.values()) / len(hr)
    assert (mean_hr, result.mean["niqe"]) == pytest.approx(MEANS[name], abs=TOLERANCE)
    # Bicubic upscaling is far from natural statistics; the HR images are close to them.
    assert all(image.metrics["niqe"] > hr[image.name]["niqe"] for image in result.images)


def test_set5_hr_and_bicubic_values_are_pinned(shared_data, monkeypatch):
    _pinned(shared_data, "Set5", SET5, monkeypatch)


@pytest.mark.slow
def test_set14_hr_and_bicubic_values_are_pinned(shared_data, monkeypatch):
    _pinned(shared_data, "Set14", SET14, monkeypatch)


def test_protocol_grey_images_border_and_batches(model, shared_data):
    hr = load_rgb(shared_data / "sr-bench" / "Set5" / "HR" / "bird.png")  # 288x288: 3x3 blocks
    one = niqe(hr, border=4, model=model)
    assert one.dtype == torch.float64 and one.dim() == 0
    torch.testing.assert_close(niqe(hr[..., 4:-4, 4:-4], model=model), one, rtol=0, atol=0)
    torch.testing.assert_close(niqe(torch.stack([hr, hr.flip(-1)]), border=4, model=model)[0], one, rtol=0, atol=0)
    # Grey: a 1-channel image is its grey levels; an RGB grey image goes through Y (16 + 219 g / 255).
    grey = hr.mean(0, keepdim=True)
    assert float(niqe(grey, model=model)) != float(niqe(grey.expand(3, -1, -1), model=model))
    # Noise moves an image away from natural statistics.
    noisy = (hr + 0.08 * torch.randn(hr.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    assert float(niqe(noisy, border=4, model=model)) > float(one) + 1


def test_too_small_images_and_bad_files_are_refused(model, tmp_path):
    with pytest.raises(NIQEError, match="at least 96x96"):
        niqe(torch.rand(3, 64, 200), model=model)
    with pytest.raises(NIQEError, match="two 96x96 blocks"):
        niqe(torch.rand(3, 100, 100), model=model)
    with pytest.raises(NIQEError, match="leaves nothing"):
        niqe(torch.rand(3, 100, 100), border=50, model=model)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(NIQEError, match="not a NIQE pristine-model"):
        pristine_model(bad)
    import numpy as np

    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, mu_pris_param=np.zeros((1, 36)))
    with pytest.raises(NIQEError, match="no 'cov_pris_param'"):
        pristine_model(wrong)


def test_offline_the_error_names_the_file_its_url_and_where_to_put_it():
    with pytest.raises(FileNotFoundError) as info:
        pristine_model()
    message = str(info.value)
    from restorekit.store import downloads_dir

    assert niqe_module.NIQE_PARAMS_URL in message and str(downloads_dir() / "niqe_pris_params.npz") in message
    assert "RESTOREKIT_OFFLINE" in message


@pytest.fixture()
def niqe_server(monkeypatch):
    from hub_server import start_server

    monkeypatch.delenv("RESTOREKIT_OFFLINE", raising=False)
    server, http = start_server()
    yield server
    http.shutdown()
    http.server_close()


def test_the_pristine_model_is_downloaded_once_and_hash_checked(niqe_server, shared_data, monkeypatch):
    from restorekit.store import downloads_dir

    data = (shared_data / "metrics" / "niqe_pris_params.npz").read_bytes()
    url = niqe_server.add("basicsr/niqe_pris_params.npz", data)
    monkeypatch.setattr(niqe_module, "NIQE_PARAMS_URL", url)
    model = pristine_model()
    assert (downloads_dir() / "niqe_pris_params.npz").read_bytes() == data
    assert model.cov.shape == (36, 36) and float(model.window.sum()) == pytest.approx(1.0)
    pristine_model()
    assert len(niqe_server.requests) == 1


def test_a_download_with_other_bytes_is_refused(niqe_server, monkeypatch):
    from restorekit.hub import DownloadError
    from restorekit.store import downloads_dir

    url = niqe_server.add("basicsr/niqe_pris_params.npz", b"x" * niqe_module.NIQE_PARAMS_SIZE)
    monkeypatch.setattr(niqe_module, "NIQE_PARAMS_URL", url)
    with pytest.raises(DownloadError, match="SHA-256"):
        pristine_model()
    assert not (downloads_dir() / "niqe_pris_params.npz").exists()
