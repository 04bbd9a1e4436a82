"""``restore prepare``: BasicSR's sub-image windows, aligned LR levels, parallel and resumable writing (issue 16)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from restorekit.data.folders import DataError
from restorekit.data.prepare import PrepareSettings, plan_windows, prepare_subimages
from restorekit.data.subimages import MANIFEST, PreparedSet, window_starts

SMALL = PrepareSettings(crop=48, step=24)


def write(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def noise(seed: int, h: int, w: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def png(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.array(im)


def restore(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "restorekit.cli", *args], capture_output=True, text=True, env=env)


# --- windows --------------------------------------------------------------------------------------


def test_windows_follow_basicsr_extract_subimages():
    # DIV2K 0001.png is 2040x1356: rows 0..720 every 240 plus one flush with the bottom (876), columns
    # 0..1440 plus 1560: the 40 sub-images BasicSR makes of it.
    assert window_starts(1356, 480, 240) == [0, 240, 480, 720, 876]
    assert window_starts(2040, 480, 240) == [0, 240, 480, 720, 960, 1200, 1440, 1560]
    assert len(plan_windows(1356, 2040, PrepareSettings())) == 40
    # A remainder up to the threshold is dropped (156 px left at the bottom, 120 at the right).
    assert window_starts(1356, 480, 240, thresh=156) == [0, 240, 480, 720]
    assert window_starts(1356, 480, 240, thresh=155) == [0, 240, 480, 720, 876]
    # Exact fit: no extra window; a side shorter than the crop is kept whole (BasicSR fails there).
    assert window_starts(960, 480, 240) == [0, 240, 480]
    assert window_starts(300, 480, 240) == [0]
    assert plan_windows(300, 200, PrepareSettings()) == [(0, 0, 300, 200)]
    # Aligned LR levels: every start a multiple of the scales (877 - 480 = 397 -> 396 at x4).
    assert window_starts(877, 480, 240, multiple=4) == [0, 240, 396]


def test_settings_are_checked():
    with pytest.raises(ValueError, match="multiples of 3"):
        PrepareSettings(crop=480, step=250, scales=(3,))
    with pytest.raises(ValueError, match="format"):
        PrepareSettings(format="lmdb")
    with pytest.raises(ValueError, match="distinct"):
        PrepareSettings(scales=(4, 4))


# --- one run ----------------------------------------------------------------------------------------


def test_sub_images_are_the_source_pixels_and_the_manifest_says_so(tmp_path):
    source = noise(0, 70, 100)
    write(tmp_path / "hr" / "a.png", source)
    write(tmp_path / "hr" / "sub" / "b.png", noise(1, 30, 40))  # smaller than the crop: kept whole
    report = prepare_subimages(tmp_path / "hr", tmp_path / "out", settings=SMALL, workers=0)
    assert (report.sources, report.prepared, report.skipped, report.failed) == (2, 2, 0, [])
    # rows [0, 22], columns [0, 24, 48, 52]
    windows = plan_windows(70, 100, SMALL)
    assert [w[:2] for w in windows] == [(r, c) for r in (0, 22) for c in (0, 24, 48, 52)]
    for index, (top, left, h, w) in enumerate(windows):
        np.testing.assert_array_equal(png(tmp_path / "out" / "HR" / f"a_s{index + 1:03d}.png"), source[top : top + h, left : left + w])
    assert png(tmp_path / "out" / "HR" / "sub" / "b_s001.png").shape == (30, 40, 3)
    assert report.subimages == len(windows) + 1

    prepared = PreparedSet.read(tmp_path / "out")
    assert prepared.complete and prepared.format == "png" and prepared.scales == []
    assert prepared.header["crop"] == 48 and prepared.header["step"] == 24
    record = prepared.records["a"]
    assert record["signature"]["size"][0] == (tmp_path / "hr" / "a.png").stat().st_size
    assert [tuple(w) for w in record["windows"]] == windows
    assert [s.name for s in prepared.subimages()][:2] == ["a_s001", "a_s002"]
    assert all(path.stat().st_size == size for path, size in prepared.output_sizes().items())


def test_lr_sub_images_are_aligned_with_hr(tmp_path):
    # HR = LR enlarged by pixel repetition, so an aligned LR sub-image is exactly every 4th HR pixel.
    lr = noise(2, 21, 27)
    hr = lr.repeat(4, axis=0).repeat(4, axis=1)
    write(tmp_path / "hr" / "a.png", hr)
    write(tmp_path / "lr" / "X4" / "ax4.png", lr)  # the DIV2K/EDSR naming
    prepare_subimages(tmp_path / "hr", tmp_path / "out", lr={4: tmp_path / "lr"}, settings=SMALL, workers=0)
    prepared = PreparedSet.read(tmp_path / "out")
    assert prepared.scales == [4]
    subs = prepared.subimages()
    assert len(subs) == len(plan_windows(84, 108, PrepareSettings(crop=48, step=24, scales=(4,))))
    for sub in subs:
        high, low = png(sub.files[1]), png(sub.files[4])
        assert high.shape == (48, 48, 3) and low.shape == (12, 12, 3)
        np.testing.assert_array_equal(high[::4, ::4], low)
    assert all(top % 4 == 0 and left % 4 == 0 for top, left, _, _ in prepared.records["a"]["windows"])


def test_two_lr_scales_share_windows_on_their_common_multiple(tmp_path):
    lr4 = noise(3, 25, 25)
    hr = lr4.repeat(4, axis=0).repeat(4, axis=1)  # 100x100
    write(tmp_path / "hr" / "a.png", hr)
    write(tmp_path / "x2" / "a.png", hr[::2, ::2])
    write(tmp_path / "x4" / "a.png", lr4)
    settings = PrepareSettings(crop=48, step=24)
    prepare_subimages(tmp_path / "hr", tmp_path / "out", lr={2: tmp_path / "x2", 4: tmp_path / "x4"}, settings=settings, workers=0)
    prepared = PreparedSet.read(tmp_path / "out")
    assert prepared.scales == [2, 4]
    starts = {w[0] for w in prepared.records["a"]["windows"]}
    assert starts == {0, 24, 48, 52}  # 100 - 48 = 52, a multiple of 4
    for sub in prepared.subimages():
        np.testing.assert_array_equal(png(sub.files[1])[::2, ::2], png(sub.files[2]))
        np.testing.assert_array_equal(png(sub.files[1])[::4, ::4], png(sub.files[4]))


def test_an_lr_image_of_the_wrong_size_names_the_file(tmp_path):
    write(tmp_path / "hr" / "a.png", noise(0, 64, 64))
    write(tmp_path / "hr" / "b.png", noise(1, 64, 64))
    write(tmp_path / "lr" / "a.png", noise(0, 16, 16))
    write(tmp_path / "lr" / "b.png", noise(1, 15, 16))
    report = prepare_subimages(tmp_path / "hr", tmp_path / "out", lr={4: tmp_path / "lr"}, settings=SMALL, workers=0)
    assert report.prepared == 1 and len(report.failed) == 1
    assert report.failed[0].startswith(str(tmp_path / "lr" / "b.png")) and "16x15; expected 16x16" in report.failed[0]
    with pytest.raises(DataError, match=r"no LR image for c\.png"):
        write(tmp_path / "hr" / "c.png", noise(2, 64, 64))
        prepare_subimages(tmp_path / "hr", tmp_path / "out2", lr={4: tmp_path / "lr"}, settings=SMALL, workers=0)


def test_npy_store_holds_the_same_pixels_as_the_png_files(tmp_path):
    write(tmp_path / "hr" / "a.png", noise(0, 70, 100))
    write(tmp_path / "hr" / "b.png", noise(1, 30, 40))
    prepare_subimages(tmp_path / "hr", tmp_path / "png", settings=SMALL, workers=0)
    npy = PrepareSettings(crop=48, step=24, format="npy")
    prepare_subimages(tmp_path / "hr", tmp_path / "npy", settings=npy, workers=0)
    as_png, as_npy = PreparedSet.read(tmp_path / "png").subimages(), PreparedSet.read(tmp_path / "npy").subimages()
    assert [s.name for s in as_png] == [s.name for s in as_npy]
    assert sorted(p.name for p in (tmp_path / "npy" / "store" / "HR").iterdir()) == ["a.npy", "b.npy"]
    for a, b in zip(as_png, as_npy):
        np.testing.assert_array_equal(png(a.files[1]), b.stored[1].array())


def test_parallel_run_equals_serial_run(tmp_path):
    for i in range(4):
        write(tmp_path / "hr" / f"{i}.png", noise(i, 60 + 8 * i, 80))
    serial = prepare_subimages(tmp_path / "hr", tmp_path / "serial", settings=SMALL, workers=0)
    parallel = prepare_subimages(tmp_path / "hr", tmp_path / "parallel", settings=SMALL, workers=2)
    assert serial.subimages == parallel.subimages
    a, b = PreparedSet.read(tmp_path / "serial"), PreparedSet.read(tmp_path / "parallel")
    assert a.header == b.header
    for name in a.records:
        assert a.records[name]["windows"] == b.records[name]["windows"]
        assert a.records[name]["outputs"] == b.records[name]["outputs"]
    for path in (tmp_path / "serial" / "HR").iterdir():
        assert path.read_bytes() == (tmp_path / "parallel" / "HR" / path.name).read_bytes()
    # The manifest is rewritten in name order at the end, whatever order the workers finished in.
    names = [json.loads(line)["name"] for line in (tmp_path / "parallel" / MANIFEST).read_text().splitlines()[1:]]
    assert names == sorted(names)


# --- resuming ----------------------------------------------------------------------------------------


def test_a_second_run_skips_what_is_done_and_redoes_what_changed(tmp_path):
    for name in ("a", "b", "c"):
        write(tmp_path / "hr" / f"{name}.png", noise(ord(name), 70, 100))
    first = prepare_subimages(tmp_path / "hr", tmp_path / "out", settings=SMALL, workers=0)
    stamps = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out" / "HR").iterdir()}
    assert first.prepared == 3

    again = prepare_subimages(tmp_path / "hr", tmp_path / "out", settings=SMALL, workers=0)
    assert (again.prepared, again.skipped, again.removed) == (0, 3, 0)
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out" / "HR").iterdir()} == stamps

    # b shrinks (fewer sub-images), c leaves the set, one output of a is damaged.
    write(tmp_path / "hr" / "b.png", noise(9, 40, 50))
    (tmp_path / "hr" / "c.png").unlink()
    (tmp_path / "out" / "HR" / "a_s003.png").write_bytes(b"cut short")
    third = prepare_subimages(tmp_path / "hr", tmp_path / "out", settings=SMALL, workers=0)
    assert (third.sources, third.prepared, third.skipped) == (2, 2, 0)
    left = sorted(p.name for p in (tmp_path / "out" / "HR").iterdir())
    assert left == [f"a_s{i:03d}.png" for i in range(1, 9)] + ["b_s001.png", "b_s002.png"]
    assert third.removed == 8 + 6  # all of c's, and b's windows 3..8
    np.testing.assert_array_equal(png(tmp_path / "out" / "HR" / "b_s001.png"), noise(9, 40, 50)[:40, :48])
    assert set(PreparedSet.read(tmp_path / "out").records) == {"a", "b"}


def test_other_settings_on_a_prepared_folder_are_refused(tmp_path):
    write(tmp_path / "hr" / "a.png", noise(0, 64, 64))
    prepare_subimages(tmp_path / "hr", tmp_path / "out", settings=SMALL, workers=0)
    with pytest.raises(DataError, match=r"prepared with other settings \(crop 48, step 24"):
        prepare_subimages(tmp_path / "hr", tmp_path / "out", settings=PrepareSettings(crop=32, step=16), workers=0)


def test_an_unreadable_source_is_reported_and_retried(tmp_path):
    write(tmp_path / "hr" / "a.png", noise(0, 64, 64))
    (tmp_path / "hr" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    report = prepare_subimages(tmp_path / "hr", tmp_path / "out", settings=SMALL, workers=0)
    assert report.prepared == 1 and len(report.failed) == 1 and "bad.png" in report.failed[0]
    prepared = PreparedSet.read(tmp_path / "out")
    assert prepared.complete and prepared.failed == report.failed
    write(tmp_path / "hr" / "bad.png", noise(1, 64, 64))  # fixed
    again = prepare_subimages(tmp_path / "hr", tmp_path / "out", settings=SMALL, workers=0)
    assert (again.prepared, again.skipped, again.failed) == (1, 1, [])


def test_duplicate_names_are_refused(tmp_path):
    write(tmp_path / "hr" / "a.png", noise(0, 32, 32))
    write(tmp_path / "hr" / "a.bmp", noise(1, 32, 32))
    with pytest.raises(DataError, match=r"a\.png: the name 'a' is also used by .*a\.bmp"):
        prepare_subimages(tmp_path / "hr", tmp_path / "out", settings=SMALL, workers=0)


def test_a_killed_run_is_finished_by_the_next_one(tmp_path):
    """SIGKILL in the middle of a real ``restore prepare`` process; the next run skips what was finished."""
    for i in range(8):
        write(tmp_path / "hr" / f"{i:02d}.png", noise(i, 160, 240))
    args = ["prepare", str(tmp_path / "hr"), "-o", str(tmp_path / "out"), "--crop", "48", "--step", "24", "-j", "0"]
    process = subprocess.Popen([sys.executable, "-m", "restorekit.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    manifest = tmp_path / "out" / MANIFEST
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        if manifest.is_file() and len(manifest.read_text().splitlines()) >= 3:  # header + 2 finished sources
            break
        time.sleep(0.01)
    assert process.poll() is None, "the run finished before it could be killed; give it more work"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    interrupted = PreparedSet.read(tmp_path / "out")
    assert not interrupted.complete and 2 <= len(interrupted.records) < 8

    again = prepare_subimages(tmp_path / "hr", tmp_path / "out", settings=SMALL, workers=0)
    assert (again.skipped, again.prepared, again.failed) == (len(interrupted.records), 8 - len(interrupted.records), [])
    finished = PreparedSet.read(tmp_path / "out")
    assert finished.complete and len(finished.records) == 8
    reference = prepare_subimages(tmp_path / "hr", tmp_path / "clean", settings=SMALL, workers=0)
    written = sorted(p.relative_to(tmp_path / "out") for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert written == sorted(p.relative_to(tmp_path / "clean") for p in (tmp_path / "clean").rglob("*") if p.is_file())
    assert len(written) == reference.subimages + 1  # the sub-images and the manifest: no temporary left
    for path in (tmp_path / "clean" / "HR").iterdir():
        assert path.read_bytes() == (tmp_path / "out" / "HR" / path.name).read_bytes()


# --- the command ---------------------------------------------------------------------------------------


def test_cli_prepares_reports_unreadable_images_and_says_how_to_train(tmp_path):
    write(tmp_path / "hr" / "a.png", noise(0, 64, 64))
    write(tmp_path / "lr" / "a.png", noise(0, 16, 16))
    (tmp_path / "hr" / "b.png").write_bytes(b"")
    write(tmp_path / "lr" / "b.png", noise(1, 16, 16))
    out = restore("prepare", str(tmp_path / "hr"), "-o", str(tmp_path / "out"), "--lr", "x4=" + str(tmp_path / "lr"),
                  "--crop", "48", "--step", "24", "--format", "npy", "-j", "0")  # fmt: skip
    # One bad image: the others are prepared, the bad one is named on one line, and the exit code says so.
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert f"error: {tmp_path / 'hr' / 'b.png'}: empty file" in out.stderr
    assert "4 sub-images of 1 images (1 cut now, 0 already done, 1 failed)" in out.stdout
    assert f"--set data.train.hr={tmp_path / 'out'} --set data.train.lr={tmp_path / 'out'}" in out.stdout
    assert PreparedSet.read(tmp_path / "out").format == "npy"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--lr", "four={tmp}/hr"], "--lr four="),
        (["--lr", "4={tmp}/hr", "--crop", "50"], "must be multiples of 4"),
        (["--format", "lmdb"], "format must be one of png, npy"),
    ],
)
def test_cli_usage_errors_are_one_line(tmp_path, args, message):
    out = restore("prepare", str(tmp_path / "hr"), "-o", str(tmp_path / "out"), *(a.format(tmp=tmp_path) for a in args))
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr and out.stderr.count("error:") == 1
    assert message.format(tmp=tmp_path) in out.stderr


def test_missing_or_overlapping_folders_are_data_errors(tmp_path):
    with pytest.raises(DataError, match=r"missing: no such folder"):
        prepare_subimages(tmp_path / "missing", tmp_path / "out", workers=0)
    write(tmp_path / "hr" / "a.png", noise(0, 64, 64))
    with pytest.raises(DataError, match=r"must not be the source folder"):
        prepare_subimages(tmp_path / "hr", tmp_path / "hr", workers=0)
