"""Restoring video clips: frames decoded, restored and encoded with PyAV (FFmpeg's libraries in a wheel).

Every frame goes through :meth:`RestorationModel.restore_picture`, the very call ``restore apply`` makes
for a photograph, so a frame of the output equals ``restore apply`` on that frame extracted losslessly
(tiles, overlap, precision and ``--outscale`` included). Frames are not stacked into one forward pass:
a batch of several frames gives results that differ from a one-frame pass in the last bits of float32
(measured 3e-7 for ``deblurgan_resnet`` on the CPU), and a clip must restore exactly as its frames do.

What keeps it fast and bounded:

* A decoder thread reads up to ``batch_frames`` frames ahead of the model and an encoder thread writes
  up to ``batch_frames`` behind it (FFmpeg releases the GIL), so decoding and encoding overlap
  inference; memory holds at most those frames, whatever the clip's length.
* Timestamps are the source's: each restored frame keeps its presentation time stamp in the source
  stream's time base, so frame rate, variable frame rate and start offset are kept.
* Audio, subtitles and the display rotation are copied (remuxed, never re-encoded) into the output,
  interleaved by time; a stream the output container cannot hold is dropped with a warning.

How an interrupted run is kept safe and resumed exactly: the video is encoded in segments of
``segment_frames`` frames (each an independent encode starting on a keyframe) into a hidden work folder
beside the output, ``.NAME.restorekit-video/``; each finished segment is renamed into place and recorded
in ``manifest.json`` atomically. The output itself is written only at the end, to a temporary name that is
renamed onto it, so the final name never holds a half-written file. ``resume=True`` keeps the segments a
killed or interrupted run finished (when the source, the model's weights and every option are the same)
and continues after them; segments are deterministic, so the resumed output is byte for byte the file an
uninterrupted run writes (tested).

Example:
    >>> import restorekit
    >>> from restorekit.video import VideoOptions, restore_video
    >>> model = restorekit.load_model("realesr-general-x4v3", tile=0)  # doctest: +SKIP
    >>> restore_video(model, "clip.mp4", "clip_x4.mp4", options=VideoOptions(crf=20))  # doctest: +SKIP
    VideoResult(frames=240, resumed_frames=0, ...)
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import itertools
import json
import queue
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

from restorekit.fileio import atomic_path, atomic_write_text, remove_temporaries

if TYPE_CHECKING:
    import numpy as np

    from restorekit.inference.model import RestorationModel

#: Output containers by file suffix (FFmpeg's muxer names).
CONTAINERS: dict[str, str] = {
    ".mp4": "mp4",
    ".m4v": "mp4",
    ".mov": "mov",
    ".mkv": "matroska",
    ".webm": "webm",
    ".avi": "avi",
}
#: Files ``restore apply`` treats as videos (read by FFmpeg; written to the containers above).
VIDEO_EXTENSIONS: frozenset[str] = frozenset({*CONTAINERS, ".mpg", ".mpeg", ".ts", ".m2ts", ".flv", ".wmv", ".3gp"})

DEFAULT_CODEC = "libx264"
DEFAULT_CRF = 18  # visually lossless for x264/x265, the usual choice for restored footage
DEFAULT_BATCH_FRAMES = 8
DEFAULT_SEGMENT_FRAMES = 240
# Encoders with a constant-quality "crf" option.
CRF_CODECS = frozenset({"libx264", "libx264rgb", "libx265", "libvpx", "libvpx-vp9", "libaom-av1", "libsvtav1"})
_CRF_MAX = 63
# No random segment UIDs, dates or library versions in the files: a resumed run writes the same bytes.
_BITEXACT = {"fflags": "+bitexact"}
_MANIFEST = "manifest.json"
_MANIFEST_VERSION = 1


class VideoError(Exception):
    """A clip that cannot be read, restored or written; the message is one line naming the file."""


class Cancelled(Exception):
    """The caller's ``progress`` callback asked to stop (raised from it); finished segments are kept."""


@dataclass(frozen=True)
class VideoOptions:
    """How a restored clip is encoded, validated on construction.

    Attributes:
        codec: FFmpeg video encoder (``libx264``, ``libx265``, ``libvpx-vp9``, ``ffv1``, ``libx264rgb``...).
        crf: Constant-quality factor for the encoders that have one (lower is better; 0 is lossless for
            x264); None: :data:`DEFAULT_CRF` for those, the codec's own default for the others.
        pix_fmt: Pixel format of the output; None: the source's when the encoder takes it, else the
            encoder's first (RGB formats such as ``bgr0`` or ``rgb24`` keep restored pixels exactly with
            lossless codecs).
        outscale: Final size relative to the source (as ``restore apply --outscale``); None: the model's scale.
        batch_frames: Frames decoded ahead of the model and held behind it for the encoder; bounds memory.
        segment_frames: Frames per resumable segment (each starts on a keyframe).
        max_pixels: Largest frame (width × height) accepted, like the images' decompression-bomb limit.

    Raises:
        VideoError: An unknown or non-video codec, a crf out of range or for a codec without one, a
            non-positive batch, segment or outscale.

    Example:
        >>> VideoOptions(codec="ffv1", pix_fmt="bgr0").crf is None
        True
    """

    codec: str = DEFAULT_CODEC
    crf: int | None = None
    pix_fmt: str | None = None
    outscale: float | None = None
    batch_frames: int = DEFAULT_BATCH_FRAMES
    segment_frames: int = DEFAULT_SEGMENT_FRAMES
    max_pixels: int | None = None

    def __post_init__(self) -> None:
        import av

        try:
            codec = av.codec.Codec(self.codec, "w")
        except Exception:  # PyAV raises UnknownCodecError or ValueError depending on the version
            raise VideoError(f"--codec {self.codec!r}: no such video encoder in this FFmpeg build") from None
        if codec.type != "video":
            raise VideoError(f"--codec {self.codec!r}: is a {codec.type} encoder, not a video one")
        if self.crf is not None:
            if self.codec not in CRF_CODECS:
                raise VideoError(
                    f"--crf: codec {self.codec} has no constant-quality factor (codecs with one: "
                    f"{', '.join(sorted(CRF_CODECS))})"
                )
            if not 0 <= self.crf <= _CRF_MAX:
                raise VideoError(f"--crf must be between 0 and {_CRF_MAX}, got {self.crf}")
        formats = {f.name for f in (codec.video_formats or ())}
        if self.pix_fmt is not None and formats and self.pix_fmt not in formats:
            raise VideoError(f"--pix-fmt {self.pix_fmt!r}: codec {self.codec} takes {', '.join(sorted(formats))}")
        if self.outscale is not None and not self.outscale > 0:
            raise VideoError(f"--outscale must be positive, got {self.outscale}")
        if self.batch_frames < 1:
            raise VideoError(f"the frame batch must be at least 1, got {self.batch_frames}")
        if self.segment_frames < 1:
            raise VideoError(f"--segment-frames must be at least 1, got {self.segment_frames}")

    @property
    def effective_crf(self) -> int | None:
        """The crf given to the encoder (the default where the codec has one)."""
        if self.crf is not None:
            return self.crf
        return DEFAULT_CRF if self.codec in CRF_CODECS else None


@dataclass(frozen=True)
class VideoResult:
    """What :func:`restore_video` did.

    Attributes:
        target: The output file.
        frames: Frames in the output.
        resumed_frames: Frames taken from an interrupted run's segments (0 unless resumed).
        size: ``(width, height)`` of the output frames.
        copied_streams: Descriptions of the audio/subtitle streams copied (``"audio aac"``...).
        dropped_streams: Streams the output container cannot hold (each was warned about).
    """

    target: Path
    frames: int
    resumed_frames: int
    size: tuple[int, int]
    copied_streams: tuple[str, ...] = ()
    dropped_streams: tuple[str, ...] = ()


@dataclass
class _Probe:
    width: int
    height: int
    pix_fmt: str
    time_base: Fraction
    rate: Fraction | None
    frames_estimate: int | None
    colour: dict[str, Any] = field(default_factory=dict)


def is_video(path: str | Path) -> bool:
    """Whether *path* names a video file (by its suffix), which ``restore apply`` restores frame by frame."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def container_of(target: Path) -> str:
    """FFmpeg's muxer for *target*'s suffix.

    Raises:
        VideoError: A suffix no supported container has.
    """
    fmt = CONTAINERS.get(target.suffix.lower())
    if fmt is None:
        raise VideoError(
            f"{target}: cannot write video to '{target.suffix or 'no suffix'}'; use one of "
            f"{', '.join(sorted(CONTAINERS))}"
        )
    return fmt


def work_folder(target: Path) -> Path:
    """The hidden folder beside *target* where segments of an unfinished run are kept."""
    return target.with_name(f".{target.name}.restorekit-video")


def restore_video(
    model: RestorationModel,
    source: str | Path,
    target: str | Path,
    *,
    options: VideoOptions | None = None,
    resume: bool = False,
    progress: Callable[[int, int | None], None] | None = None,
    warn: Callable[[str], None] | None = None,
) -> VideoResult:
    """Restore every frame of *source* with *model* and write the clip to *target*.

    Args:
        model: The loaded model (its tile, overlap, batch, precision and device are used for each frame).
        source: The clip (anything FFmpeg reads).
        target: The output (``.mp4``, ``.mkv``, ``.mov``, ``.webm`` or ``.avi``); written to a temporary
            name and renamed at the end.
        options: Encoding and pipeline options.
        resume: Continue from the segments an interrupted run with the same source, model and options left
            in :func:`work_folder`; otherwise such segments are discarded and the clip starts over.
        progress: Called as ``progress(frames_done, frames_total_or_None)`` after every frame (and once
            at the start with the resumed count); may raise :class:`Cancelled` to stop.
        warn: Called with a message for each stream dropped or setting worth telling (default: none).

    Returns:
        What was written.

    Raises:
        VideoError: Unreadable source, impossible encoder settings, or a write error; one line naming the file.
        Cancelled: *progress* raised it; finished segments are kept for ``resume``.
        KeyboardInterrupt: Likewise kept.

    Example:
        >>> restore_video(model, "clip.mp4", "out.mkv", options=VideoOptions(codec="ffv1"))  # doctest: +SKIP
    """

    options = options or VideoOptions()
    source, target = Path(source), Path(target)
    warn = warn or (lambda message: None)
    fmt = container_of(target)
    if source.resolve() == target.resolve():
        raise VideoError(f"{source}: the output would replace the input; give another -o")
    probe = _probe(source, options)
    out_w, out_h = _output_size(model, probe, options)
    pix_fmt = _pix_fmt(options, probe, source)
    _check_even(pix_fmt, out_w, out_h, target)

    folder = work_folder(target)
    key = _run_key(model, source, options, pix_fmt)
    done_segments = _kept_segments(folder, key, resume, warn)
    segment_frames = options.segment_frames
    resumed = sum(s["frames"] for s in done_segments)
    folder.mkdir(parents=True, exist_ok=True)
    remove_temporaries(folder)  # a segment a killed run was writing
    manifest = {"version": _MANIFEST_VERSION, "key": key, "segments": list(done_segments)}
    atomic_write_text(folder / _MANIFEST, json.dumps(manifest, indent=1))

    total = probe.frames_estimate
    if progress is not None:
        progress(resumed, total)
    encoder = _SegmentWriter(
        folder=folder,
        fmt=fmt,
        suffix=target.suffix.lower(),
        options=options,
        pix_fmt=pix_fmt,
        probe=probe,
        size=(out_w, out_h),
        manifest=manifest,
        first_index=resumed,
    )
    frames = resumed
    try:
        frames = _run_pipeline(
            model,
            source,
            probe,
            options,
            encoder,
            skip=resumed,
            segment_frames=segment_frames,
            progress=progress,
            total=total,
        )
    except BaseException:
        encoder.abort()
        raise
    if frames == 0:
        raise VideoError(f"{source}: has no video frames to restore")
    copied, dropped = _mux_final(source, target, fmt, folder, manifest, warn)
    shutil.rmtree(folder, ignore_errors=True)
    return VideoResult(target, frames, resumed, (out_w, out_h), tuple(copied), tuple(dropped))


# --- the source ------------------------------------------------------------------------------------


def _open_input(source: Path) -> Any:
    import av

    if not source.is_file():
        raise VideoError(f"{source}: no such file")
    try:
        container = av.open(str(source), "r")
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise VideoError(f"{source}: not a video FFmpeg can read ({_first_line(exc)})") from None
    if not container.streams.video:
        container.close()
        raise VideoError(f"{source}: has no video stream")
    return container


def _probe(source: Path, options: VideoOptions) -> _Probe:
    container = _open_input(source)
    with container:
        stream = container.streams.video[0]
        ctx = stream.codec_context
        width, height = int(ctx.width), int(ctx.height)
        if width < 1 or height < 1:
            raise VideoError(f"{source}: the video stream has no frame size")
        limit = options.max_pixels
        if limit is None:
            from PIL import Image

            limit = Image.MAX_IMAGE_PIXELS
        if limit is not None and width * height > limit:
            raise VideoError(
                f"{source}: frames of {width}×{height} = {width * height} pixels are over the limit of {limit} "
                "(raise it with --max-pixels)"
            )
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        rate = Fraction(rate) if rate else None
        estimate = int(stream.frames) or None
        if estimate is None and rate:
            seconds = None
            if stream.duration is not None and stream.time_base is not None:
                seconds = stream.duration * stream.time_base
            elif container.duration is not None:
                seconds = Fraction(container.duration, 1_000_000)
            if seconds:
                estimate = max(1, round(seconds * rate))
        colour = {
            name: getattr(ctx, name)
            for name in ("colorspace", "color_range", "color_primaries", "color_trc")
            if getattr(ctx, name, None) is not None
        }
        pix_fmt = ctx.format.name if ctx.format else "yuv420p"
        time_base = Fraction(stream.time_base or Fraction(1, 1000))
        return _Probe(width, height, pix_fmt, time_base, rate, estimate, colour)


def _output_size(model: RestorationModel, probe: _Probe, options: VideoOptions) -> tuple[int, int]:
    if options.outscale is not None and options.outscale != model.scale:
        return max(1, round(probe.width * options.outscale)), max(1, round(probe.height * options.outscale))
    return probe.width * model.scale, probe.height * model.scale


def _pix_fmt(options: VideoOptions, probe: _Probe, source: Path) -> str:
    import av

    if options.pix_fmt is not None:
        return options.pix_fmt
    formats = [f.name for f in (av.codec.Codec(options.codec, "w").video_formats or ())]
    if not formats or probe.pix_fmt in formats:
        return probe.pix_fmt
    return formats[0]


def _check_even(pix_fmt: str, width: int, height: int, target: Path) -> None:
    import av

    descriptor = av.VideoFormat(pix_fmt)
    # Chroma-subsampled formats (yuv420p...) need sides divisible by the subsampling.
    chroma = [c for c in descriptor.components if c.is_chroma]
    if not chroma:
        return
    sx = max(width // max(1, c.width) for c in chroma) if width else 1
    sy = max(height // max(1, c.height) for c in chroma) if height else 1
    if width % sx or height % sy:
        raise VideoError(
            f"{target}: {width}×{height} frames cannot be stored as {pix_fmt} (its chroma needs sides divisible "
            f"by {sx}×{sy}); choose an --outscale that gives even sides or another --pix-fmt"
        )


# --- resuming ----------------------------------------------------------------------------------------


def _run_key(model: RestorationModel, source: Path, options: VideoOptions, pix_fmt: str) -> dict[str, Any]:
    """Everything that decides the output's bytes: a kept segment is reused only when all of it matches."""
    import torch

    from restorekit._version import __version__

    digest = hashlib.sha256()
    for name, tensor in sorted(model.network.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    stat = source.stat()
    encoding = {k: v for k, v in asdict(options).items() if k not in ("batch_frames", "max_pixels")}
    return {
        "restorekit": __version__,
        "source": {"path": str(source.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns},
        "weights": digest.hexdigest(),
        "model": {"name": model.name, "metadata": model.metadata},
        "inference": {
            "tile": model.tile,
            "overlap": model.overlap,
            "batch_size": model.batch_size,
            "device": str(model.device),
            "dtype": str(model.dtype),
        },
        "encoding": {**encoding, "pix_fmt": pix_fmt, "crf": options.effective_crf},
        "av": _av_version(),
    }


def _av_version() -> str:
    import av

    return f"{av.__version__}/{'.'.join(map(str, av.library_versions.get('libavcodec', ())))}"


def _kept_segments(folder: Path, key: dict[str, Any], resume: bool, warn: Callable[[str], None]) -> list[dict]:
    """The finished segments an interrupted run left that this run may reuse."""
    manifest_path = folder / _MANIFEST
    if not folder.exists():
        return []
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        manifest = None
    if not resume:
        if manifest and manifest.get("segments"):
            frames = sum(s.get("frames", 0) for s in manifest["segments"])
            warn(f"discarding {frames} frames an interrupted run restored (use --resume to continue it)")
        shutil.rmtree(folder, ignore_errors=True)
        return []
    if manifest is None or manifest.get("version") != _MANIFEST_VERSION:
        warn(f"{folder}: no usable record of the interrupted run; starting over")
        shutil.rmtree(folder, ignore_errors=True)
        return []
    if manifest.get("key") != key:
        changed = sorted(k for k in key if manifest.get("key", {}).get(k) != key[k])
        raise VideoError(
            f"{folder}: the interrupted run used a different {', '.join(changed)}; --resume needs the same source, "
            "model and options (run without --resume to start over)"
        )
    kept = []
    for segment in manifest.get("segments", []):
        if not (folder / segment["file"]).is_file() or segment["index"] != len(kept):
            break
        kept.append(segment)
    return kept


# --- the pipeline ------------------------------------------------------------------------------------

_END = object()


class _Failed:
    """An exception raised in a pipeline thread, carried to the main thread."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def _put(q: queue.Queue, item: Any, stop: threading.Event) -> bool:
    """Put *item* unless the pipeline is stopping; False when it is."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _decode(source: Path, probe: _Probe, skip: int, out: queue.Queue, stop: threading.Event) -> None:
    import av

    try:
        with _open_input(source) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"  # FFmpeg decodes with its own threads
            index = 0
            for frame in container.decode(stream):
                if stop.is_set():
                    return
                if index >= skip:
                    pts = frame.pts
                    if pts is None and probe.rate:
                        pts = round(index / probe.rate / probe.time_base)
                    kwargs = {}
                    if frame.colorspace:
                        kwargs["src_colorspace"] = frame.colorspace
                    array = frame.to_ndarray(format="rgb24", **kwargs)
                    if not _put(out, (index, pts, array, int(frame.rotation or 0)), stop):
                        return
                index += 1
    except av.FFmpegError as exc:
        _put(out, _Failed(VideoError(f"{source}: cannot decode frame {index} ({_first_line(exc)})")), stop)
    except BaseException as exc:  # carried to the main thread, which re-raises it
        _put(out, _Failed(exc), stop)
    else:
        _put(out, _END, stop)


def _run_pipeline(
    model: RestorationModel,
    source: Path,
    probe: _Probe,
    options: VideoOptions,
    encoder: _SegmentWriter,
    *,
    skip: int,
    segment_frames: int,
    progress: Callable[[int, int | None], None] | None,
    total: int | None,
) -> int:
    import torch

    from restorekit.data.images import Picture

    stop = threading.Event()
    decoded: queue.Queue = queue.Queue(maxsize=options.batch_frames)
    restored: queue.Queue = queue.Queue(maxsize=options.batch_frames)
    reader = threading.Thread(target=_decode, args=(source, probe, skip, decoded, stop), daemon=True)
    writer = threading.Thread(target=encoder.run, args=(restored, stop, segment_frames), daemon=True)
    reader.start()
    writer.start()
    frames = skip
    try:
        while encoder.failure is None:
            try:
                item = decoded.get(timeout=0.1)
            except queue.Empty:
                continue
            if item is _END:
                break
            if isinstance(item, _Failed):
                raise item.exc
            index, pts, array, rotation = item
            rgb = torch.from_numpy(array).permute(2, 0, 1).float().div_(255.0)
            # restore_picture is what `restore apply` calls for a photograph: the frames equal its outputs.
            try:
                out = model.restore_picture(Picture(rgb=rgb.contiguous()), outscale=options.outscale).rgb
            except (torch.OutOfMemoryError, MemoryError):
                raise VideoError(
                    f"{source}: not enough memory for frame {index}; use a smaller --tile or --batch"
                ) from None
            except (RuntimeError, ValueError) as exc:  # e.g. a network that cannot take 3-channel frames
                raise VideoError(f"{source}: frame {index}: {_first_line(exc)}") from None
            pixels = out.clamp(0.0, 1.0).mul(255.0).round_().to(torch.uint8).permute(1, 2, 0).numpy()
            if not _put(restored, (index, pts, pixels, rotation), stop):
                break
            frames += 1
            if progress is not None:
                progress(frames, max(total, frames) if total else None)
        _put(restored, _END, stop)
        writer.join()
        if encoder.failure is not None:
            raise encoder.failure
        return frames
    except BaseException:
        stop.set()
        raise
    finally:
        stop.set()
        reader.join(timeout=10)
        writer.join(timeout=10)


class _SegmentWriter:
    """The encoder thread: writes frames into segment files and records each finished one."""

    def __init__(
        self,
        *,
        folder: Path,
        fmt: str,
        suffix: str,
        options: VideoOptions,
        pix_fmt: str,
        probe: _Probe,
        size: tuple[int, int],
        manifest: dict[str, Any],
        first_index: int,
    ) -> None:
        self.folder, self.fmt, self.suffix = folder, fmt, suffix
        self.options, self.pix_fmt, self.probe, self.size = options, pix_fmt, probe, size
        self.manifest = manifest
        self.next_index = first_index
        self.failure: BaseException | None = None
        # The segment being written: its atomic_path context, container, stream, final name, first frame.
        self._open: tuple[Any, Any, Any, str, int] | None = None
        self._last_index = first_index - 1
        self._rotation = 0

    def run(self, frames: queue.Queue, stop: threading.Event, segment_frames: int) -> None:
        import av

        try:
            while not stop.is_set():
                try:
                    item = frames.get(timeout=0.1)
                except queue.Empty:
                    continue
                if item is _END:
                    self._finish_segment()
                    return
                index, pts, pixels, rotation = item
                if self._open is None:
                    self._start_segment(index, rotation)
                self._encode(pixels, pts, index)
                if (index + 1) % segment_frames == 0:
                    self._finish_segment()
        except av.FFmpegError as exc:
            self.failure = VideoError(f"{self.folder}: the {self.options.codec} encoder failed ({_first_line(exc)})")
        except OSError as exc:
            self.failure = VideoError(f"{self.folder}: cannot write a segment ({exc.strerror or exc})")
        except BaseException as exc:
            self.failure = exc
        finally:
            if self.failure is not None:
                stop.set()  # the decoder and the main loop stop waiting on this thread
            if self.failure is not None or stop.is_set():
                self.abort()

    def _start_segment(self, index: int, rotation: int) -> None:
        import av

        number = len(self.manifest["segments"])
        name = f"segment-{number:05d}{self.suffix}"
        ctx = atomic_path(self.folder / name)
        tmp = ctx.__enter__()
        try:
            container = av.open(str(tmp), "w", format=self.fmt, options=_BITEXACT)
            stream = container.add_stream(self.options.codec, rate=self.probe.rate or None)
            stream.width, stream.height = self.size
            stream.pix_fmt = self.pix_fmt
            stream.time_base = self.probe.time_base
            stream.codec_context.time_base = self.probe.time_base
            stream.thread_type = "AUTO"
            for name_, value in self.probe.colour.items():
                with contextlib.suppress(AttributeError, ValueError, TypeError):
                    setattr(stream.codec_context, name_, value)
            crf = self.options.effective_crf
            if crf is not None:
                stream.options = {"crf": str(crf)}
        except BaseException:
            ctx.__exit__(*_exc_info())
            raise
        self._open = (ctx, container, stream, name, index)
        self._rotation = rotation

    def _encode(self, pixels: np.ndarray, pts: int | None, index: int) -> None:
        import av

        assert self._open is not None
        _, container, stream, _, _ = self._open
        frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
        if self.pix_fmt != "rgb24":
            kwargs = {}
            colourspace = self.probe.colour.get("colorspace")
            if colourspace:
                kwargs["dst_colorspace"] = colourspace
            frame = frame.reformat(format=self.pix_fmt, **kwargs)
        frame.pts = pts
        frame.time_base = self.probe.time_base
        for packet in stream.encode(frame):
            container.mux(packet)
        self._last_index = index

    def _finish_segment(self) -> None:
        if self._open is None:
            return
        ctx, container, stream, name, first = self._open
        self._open = None
        try:
            for packet in stream.encode():
                container.mux(packet)
            container.close()
        except BaseException:
            with contextlib.suppress(Exception):
                container.close()
            ctx.__exit__(*_exc_info())
            raise
        ctx.__exit__(None, None, None)  # renamed into place: the segment is finished
        frames = self._last_index - first + 1
        self.manifest["segments"].append(
            {
                "index": len(self.manifest["segments"]),
                "file": name,
                "first_frame": first,
                "frames": frames,
                "rotation": self._rotation,
            }
        )
        atomic_write_text(self.folder / _MANIFEST, json.dumps(self.manifest, indent=1))
        self.next_index = first + frames

    def abort(self) -> None:
        """Drop the segment being written (its temporary file is removed); finished ones stay."""
        if self._open is None:
            return
        ctx, container, _, _, _ = self._open
        self._open = None
        with contextlib.suppress(Exception):
            container.close()
        with contextlib.suppress(Exception):
            ctx.__exit__(VideoError, VideoError("aborted"), None)


def _exc_info() -> tuple[Any, Any, Any]:
    import sys

    return sys.exc_info()


# --- the final file -----------------------------------------------------------------------------------


def _mux_final(
    source: Path, target: Path, fmt: str, folder: Path, manifest: dict[str, Any], warn: Callable[[str], None]
) -> tuple[list[str], list[str]]:
    """Join the segments and the source's audio/subtitle packets, interleaved by time, into *target*."""
    import av

    segments = [folder / s["file"] for s in manifest["segments"]]
    copied: list[str] = []
    dropped: list[str] = []
    rotation = manifest["segments"][0].get("rotation", 0) if manifest["segments"] else 0
    try:
        with atomic_path(target) as tmp, _open_input(source) as src:
            out = av.open(str(tmp), "w", format=fmt, options=_BITEXACT)
            try:
                with av.open(str(segments[0])) as first:
                    video = out.add_stream_from_template(first.streams.video[0])
                if rotation:
                    video.set_display_rotation(rotation)
                video.metadata.update(src.streams.video[0].metadata)
                supported = out.supported_codecs
                others: dict[int, Any] = {}
                for stream in src.streams:
                    if stream.type not in ("audio", "subtitle"):
                        continue
                    name = stream.codec_context.name if stream.codec_context else stream.codec.name
                    label = f"{stream.type} {name}"
                    if name not in supported:
                        dropped.append(label)
                        warn(f"{source}: {label} stream #{stream.index} cannot be stored in {target.suffix}; dropped")
                        continue
                    copy = out.add_stream_from_template(stream)
                    copy.metadata.update(stream.metadata)
                    others[stream.index] = copy
                    copied.append(label)
                out.metadata.update(src.metadata)
                video_packets = _segment_packets(segments)
                other_packets = _source_packets(src, list(others))
                for where, packet in _by_time(video_packets, other_packets):
                    packet.stream = video if where is None else others[where]
                    out.mux(packet)
            finally:
                out.close()
    except av.FFmpegError as exc:
        raise VideoError(f"{target}: cannot write the video ({_first_line(exc)})") from None
    return copied, dropped


def _segment_packets(segments: list[Path]) -> Iterator[tuple[None, Any]]:
    import av

    for path in segments:
        with av.open(str(path)) as container:
            for packet in container.demux(container.streams.video[0]):
                if packet.size == 0:
                    continue
                yield None, packet


def _source_packets(container: Any, indices: list[int]) -> Iterator[tuple[int, Any]]:
    if not indices:
        return
    streams = [s for s in container.streams if s.index in indices]
    for packet in container.demux(streams):
        if packet.size == 0:
            continue
        yield packet.stream.index, packet


def _when(packet: Any) -> Fraction:
    stamp = packet.dts if packet.dts is not None else packet.pts
    return Fraction(stamp or 0) * Fraction(packet.time_base or 1)


def _by_time(*streams: Iterator[tuple[int | None, Any]]) -> Iterator[tuple[int | None, Any]]:
    """``(source stream index or None for video, packet)`` of sorted streams, merged by decode time."""
    counter = itertools.count()
    keyed = [((_when(p), next(counter), where, p) for where, p in packets) for packets in streams]
    for _, _, where, packet in heapq.merge(*keyed):
        yield where, packet


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
