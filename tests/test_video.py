"""``restore apply`` on video clips: real CLI processes, clips made here with PyAV, tiny networks.

Checked: frame count, size, frame rate and every frame's timestamp; audio and subtitles copied; a frame
of the output equals ``restore apply`` on that frame extracted losslessly (ffv1 in RGB keeps restored
pixels exactly); an x1 deblurring model through x264 into MP4; a run killed with SIGKILL leaves nothing
under the final name and ``--resume`` ends with the very bytes of an uninterrupted run; bad input is one line.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

av = pytest.importorskip("av", reason="PyAV (restorekit[video]) is not installed")

from restorekit.plugins import registry  # noqa: E402
from restorekit.weights import WeightInfo, save_weights  # noqa: E402

FRAMES = 16
FPS = 25
WIDTH, HEIGHT = 48, 32
SAMPLE_RATE = 48000
SUBTITLE = b"restored subtitles stay"
TILE = ["--tile", "40", "--overlap", "12"]  # several tiles per frame: the tiled path, seam-free for SRResNet


def run_cli(*args: str | Path, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "restorekit.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        **kwargs,
    )


def save_tiny(path: Path, kind: str) -> Path:
    torch.manual_seed(0)
    if kind == "sr":
        args = {"num_features": 8, "num_blocks": 1, "scale": 2}
        net = registry("generators").build("srresnet", **args)
        info = WeightInfo(name="srresnet", args=args, task="super_resolution", scale=2, plugin="srgan")
    else:
        args = {"num_features": 4, "num_blocks": 1, "use_dropout": False}
        net = registry("generators").build("deblurgan_resnet", **args)
        info = WeightInfo(name="deblurgan_resnet", args=args, task="deblurring", scale=1, plugin="deblurgan")
    return save_weights(net, path, info)


def make_clip(path: Path, *, subtitles: bool) -> None:
    """FRAMES frames of moving gradients + noise (x264), a 440 Hz stereo AAC track, optionally an SRT line."""
    out = av.open(str(path), "w")
    video = out.add_stream("libx264", rate=FPS)
    video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    audio = out.add_stream("aac", rate=SAMPLE_RATE)
    audio.layout = "stereo"
    subs = out.add_mux_stream("subrip") if subtitles else None
    rng = np.random.default_rng(0)
    yy, xx = np.meshgrid(np.linspace(0, 1, HEIGHT), np.linspace(0, 1, WIDTH), indexing="ij")
    for i in range(FRAMES):
        smooth = np.stack([xx, yy, (xx + yy + i / FRAMES) % 1], axis=-1)
        pixels = (np.clip(0.75 * smooth + 0.25 * rng.random((HEIGHT, WIDTH, 3)), 0, 1) * 255).astype(np.uint8)
        frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
        frame.pts = i
        out.mux(video.encode(frame))
    out.mux(video.encode())
    samples = SAMPLE_RATE * FRAMES // FPS
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(samples) / SAMPLE_RATE)).astype(np.float32)
    for start in range(0, samples, 1024):
        chunk = tone[start : start + 1024]
        frame = av.AudioFrame.from_ndarray(np.stack([chunk, chunk]), format="fltp", layout="stereo")
        frame.sample_rate, frame.pts = SAMPLE_RATE, start
        out.mux(audio.encode(frame))
    out.mux(audio.encode())
    if subs is not None:
        packet = av.Packet(SUBTITLE)
        packet.pts = packet.dts = 0
        packet.duration = 500
        packet.time_base = Fraction(1, 1000)
        packet.stream = subs
        out.mux(packet)
    out.close()


def video_facts(path: Path) -> dict:
    """Frames (as RGB arrays), their timestamps in seconds, size, rate, audio duration, subtitle payloads."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames, times = [], []
        for frame in container.decode(stream):
            frames.append(frame.to_ndarray(format="rgb24"))
            times.append(float(frame.pts * frame.time_base))
        facts = {
            "frames": frames,
            "times": times,
            "size": (stream.codec_context.width, stream.codec_context.height),
            "rate": Fraction(stream.average_rate),
            "codec": stream.codec_context.name,
        }
    with av.open(str(path)) as container:
        audio = container.streams.audio
        facts["audio"] = None
        if audio:
            samples = sum(frame.samples for frame in container.decode(audio[0]))
            facts["audio"] = (samples / audio[0].codec_context.sample_rate, audio[0].codec_context.name)
    with av.open(str(path)) as container:
        subs = container.streams.subtitles
        facts["subtitles"] = [bytes(p) for p in container.demux(subs[0]) if p.size] if subs else []
    return facts


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("video")
    make_clip(root / "clip.mkv", subtitles=True)
    make_clip(root / "clip.mp4", subtitles=False)
    return {
        "root": root,
        "mkv": root / "clip.mkv",
        "mp4": root / "clip.mp4",
        "sr": save_tiny(root / "tiny-sr.safetensors", "sr"),
        "deblur": save_tiny(root / "tiny-deblur.safetensors", "deblur"),
        "env": dict(os.environ, RESTOREKIT_HOME=str(root / "home")),
    }


@pytest.fixture(scope="module")
def sr_run(clips: dict) -> dict:
    """The x2 model over the MKV clip into lossless RGB ffv1, in segments of 6 frames."""
    out = clips["root"] / "out" / "restored.mkv"
    result = run_cli(
        "apply",
        "--model",
        clips["sr"],
        clips["mkv"],
        "-o",
        out,
        "--codec",
        "ffv1",
        "--pix-fmt",
        "bgr0",
        "--segment-frames",
        "6",
        *TILE,
        env=clips["env"],
    )
    return {"out": out, "result": result}


def test_sr_clip_keeps_frames_timing_audio_and_subtitles(clips: dict, sr_run: dict) -> None:
    result = sr_run["result"]
    assert result.returncode == 0, result.stderr
    assert f"({FRAMES} frames, {2 * WIDTH}×{2 * HEIGHT}" in result.stdout
    source, output = video_facts(clips["mkv"]), video_facts(sr_run["out"])
    assert len(output["frames"]) == FRAMES
    assert output["size"] == (2 * WIDTH, 2 * HEIGHT)
    assert output["rate"] == FPS
    assert output["times"] == source["times"]  # every frame keeps its timestamp
    assert output["codec"] == "ffv1"
    assert output["audio"] == source["audio"]  # copied, not re-encoded: the same samples
    assert abs(output["audio"][0] - FRAMES / FPS) < 0.05
    assert output["subtitles"] == [SUBTITLE]
    leftovers = [p.name for p in sr_run["out"].parent.iterdir() if p.name != "restored.mkv"]
    assert leftovers == [], "segments or temporary files left behind"


def test_sr_frames_equal_restore_apply_on_the_extracted_frames(clips: dict, sr_run: dict, tmp_path: Path) -> None:
    source, output = video_facts(clips["mkv"]), video_facts(sr_run["out"])
    picks = (0, 7, FRAMES - 1)  # first, inside the second segment, last
    frames_dir = tmp_path / "frames"
    frames_dir.mkdir()
    for k in picks:  # lossless extraction: the decoded RGB frame as a PNG
        Image.fromarray(source["frames"][k]).save(frames_dir / f"frame{k:02d}.png")
    result = run_cli("apply", "--model", clips["sr"], frames_dir, "-o", tmp_path / "restored", *TILE, env=clips["env"])
    assert result.returncode == 0, result.stderr
    for k in picks:
        expected = np.asarray(Image.open(tmp_path / "restored" / f"frame{k:02d}.png").convert("RGB"))
        assert np.array_equal(output["frames"][k], expected), f"frame {k} differs from restore apply"


def test_x1_deblurring_model_into_mp4_with_x264(clips: dict, tmp_path: Path) -> None:
    out = tmp_path / "sharp.mp4"
    result = run_cli("apply", "--model", clips["deblur"], clips["mp4"], "-o", out, "--crf", "20", env=clips["env"])
    assert result.returncode == 0, result.stderr
    source, output = video_facts(clips["mp4"]), video_facts(out)
    assert len(output["frames"]) == FRAMES
    assert output["size"] == (WIDTH, HEIGHT)
    assert output["rate"] == FPS
    assert output["codec"] == "h264"
    assert output["times"] == source["times"]
    assert output["audio"] == source["audio"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sharp.mp4"]


@pytest.mark.slow  # three CLI runs
def test_killed_run_leaves_no_output_and_resume_gives_the_same_bytes(clips: dict, sr_run: dict) -> None:
    assert sr_run["result"].returncode == 0, sr_run["result"].stderr
    target = clips["root"] / "resumed" / "restored.mkv"
    args = [
        "apply",
        "--model",
        clips["sr"],
        clips["mkv"],
        "-o",
        target,
        "--codec",
        "ffv1",
        "--pix-fmt",
        "bgr0",
        "--segment-frames",
        "6",
        *TILE,
    ]
    manifest = target.parent / f".{target.name}.restorekit-video" / "manifest.json"
    child = subprocess.Popen(
        [sys.executable, "-m", "restorekit.cli", *map(str, args)],
        env=clips["env"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and child.poll() is None:
            try:
                if json.loads(manifest.read_text())["segments"]:
                    break
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.01)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not target.exists(), "a killed run left a file under the final name"
    kept = json.loads(manifest.read_text())["segments"]
    assert 1 <= len(kept) < 3

    result = run_cli(*args, "--resume", env=clips["env"])
    assert result.returncode == 0, result.stderr
    assert f"{sum(s['frames'] for s in kept)} resumed" in result.stdout
    assert target.read_bytes() == sr_run["out"].read_bytes()  # exactly the uninterrupted run's file
    assert sorted(p.name for p in target.parent.iterdir()) == ["restored.mkv"]


def test_bad_clip_and_misplaced_flags_are_one_line(clips: dict, tmp_path: Path) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(os.urandom(4096))
    result = run_cli("apply", "--model", clips["sr"], broken, "-o", tmp_path / "x.mp4", env=clips["env"])
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors and "broken.mp4" in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "x.mp4").exists()
    result = run_cli("apply", "--model", clips["sr"], clips["mkv"], "--codec", "ffv1", "--crf", "3", env=clips["env"])
    assert result.returncode == 2 and "--crf: codec ffv1 has no constant-quality factor" in result.stderr
    image = tmp_path / "photo.png"
    Image.new("RGB", (8, 8)).save(image)
    result = run_cli("apply", "--model", clips["sr"], image, "--crf", "20", env=clips["env"])
    assert result.returncode == 2 and "--crf applies to video inputs only" in result.stderr
