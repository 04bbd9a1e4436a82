"""The guards behind the hostile-input corpus, one by one, in process (issue 14).

``test_hostile_corpus.py`` proves the promise end to end through ``restore``; these tests pin down each
mechanism: plugin code contained whatever it raises (a real Ctrl-C still stops), networks from
untrusted sizes refused before allocation, the memory estimate, out-of-memory advice, escaped file
names, multi-frame images, umask-following atomic writes whose leftovers are cleaned (but never a live
writer's), checkpoints and recipes read defensively, and ``generator.init`` taking ``.pth`` files.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from restorekit import hookimpl, limits
from restorekit.cli.common import SafeConsole, is_out_of_memory, out_of_memory_message, scrub
from restorekit.fileio import TEMPORARY, atomic_path, atomic_write_text, printable, remove_temporaries
from restorekit.plugins import PluginError, call_plugin, get_plugins, reset_plugins
from restorekit.registry import Component


# --- plugin code is contained ---------------------------------------------------------------------


class _Custom(BaseException):
    pass


def _exit() -> None:
    sys.exit(3)


def _interrupt() -> None:
    raise KeyboardInterrupt


def _custom() -> None:
    raise _Custom("not an Exception")


def _generator_exit() -> None:
    raise GeneratorExit


@pytest.mark.parametrize(
    ("func", "reason"),
    [(_exit, "SystemExit: sys.exit(3)"), (_interrupt, "KeyboardInterrupt"), (_custom, "_Custom: not an Exception"),
     (_generator_exit, "GeneratorExit")],
)  # fmt: skip
def test_call_plugin_contains_every_way_out(func, reason):
    with pytest.raises(PluginError) as info:
        call_plugin("evil", "import", func)
    assert info.value.plugin == "evil" and info.value.reason == reason
    assert str(info.value) == f"plugin 'evil' failed in import ({reason})"


def test_call_plugin_passes_the_hooks_own_errors_and_results():
    assert call_plugin("p", "x", lambda a, b=0: a + b, 2, b=3) == 5

    class Refusal(Exception):
        pass

    def refuse():
        raise Refusal("not mine")

    with pytest.raises(Refusal):
        call_plugin("p", "x", refuse, passthrough=(Refusal,))


@pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is not signal.default_int_handler,
    reason="needs Python's own SIGINT handler in the main thread",
)
def test_a_real_ctrl_c_inside_plugin_code_still_stops_the_program():
    def slow_plugin():
        os.kill(os.getpid(), signal.SIGINT)  # the user presses Ctrl-C while the plugin runs
        time.sleep(5)

    with pytest.raises(KeyboardInterrupt):
        call_plugin("slow", "import", slow_plugin)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back


def _module(name: str, **hooks) -> types.ModuleType:
    module = types.ModuleType(name)
    for hook, func in hooks.items():
        setattr(module, hook, func)
    return module


@pytest.fixture()
def plugins():
    yield get_plugins()
    reset_plugins()


def test_a_collector_hook_that_exits_breaks_only_its_plugin(plugins):
    before = plugins.registry("generators").names()

    def register_generators(register):
        register("half_registered", nn.Identity)
        sys.exit(2)

    plugins.add_plugin(_module("quitter", register_generators=hookimpl(register_generators)), "quitter")
    info = plugins.info["quitter"]
    assert info.state == "broken" and info.error == "SystemExit: sys.exit(2)"
    assert plugins.registry("generators").names() == before  # nothing half-registered stays
    assert "'quitter' (SystemExit: sys.exit(2)) failed to load" in plugins.broken_note()


def test_a_converter_that_raises_keyboardinterrupt_is_named(plugins, tmp_path):
    from restorekit.convert import ConverterFailed, convert_checkpoint, load_foreign

    def convert_state_dict(state_dict, path):
        raise KeyboardInterrupt

    plugins.add_plugin(_module("grabby", convert_state_dict=hookimpl(convert_state_dict)), "grabby")
    path = tmp_path / "any.pth"
    torch.save({"w": torch.zeros(1)}, path)
    for read in (convert_checkpoint, load_foreign):  # load_foreign does not hand a crash over to spandrel
        with pytest.raises(ConverterFailed, match=r"any\.pth: plugin 'grabby' failed while reading the checkpoint \(KeyboardInterrupt\)"):
            read(path)


# --- sizes from untrusted places ------------------------------------------------------------------


class _Stack(nn.Module):
    def __init__(self, *, blocks: int = 1, width: int = 4):
        super().__init__()
        self.scale = 1
        self.body = nn.Sequential(*[nn.Conv2d(width, width, 3, padding=1) for _ in range(blocks)])

    def forward(self, x):
        return self.body(x)


class _Idle(nn.Module):
    def __init__(self, *, steps: int = 1):
        super().__init__()
        self.scale = 1
        for _ in range(steps):  # works without registering anything
            nn.ReLU()


def _component(factory) -> Component:
    return Component(factory.__name__.strip("_").lower(), "generators", factory, "test")


@pytest.mark.parametrize(
    ("factory", "args", "passed"),
    [(_Stack, {"blocks": 10**9}, "weight tensors"), (_Stack, {"width": 10**6}, "weight values"),
     (_Idle, {"steps": 10**9}, "Python calls")],
)  # fmt: skip
def test_construction_is_stopped_at_the_budget(factory, args, passed):
    budget = limits.Budget(tensors=500, values=10**6, calls=200_000)
    init = torch.nn.init.kaiming_uniform_
    start = time.perf_counter()
    with pytest.raises(limits.SizeLimitError, match=passed) as info:
        limits.build_on_meta(_component(factory), args, budget=budget, where="generator.args")
    assert time.perf_counter() - start < 30  # stopped, not hung
    assert info.value.key == "generator.args" and str(info.value).startswith("generator.args: generator")
    assert torch.nn.init.kaiming_uniform_ is init  # the init functions skipped on meta are put back


def test_a_sane_network_is_built_on_meta_with_nothing_allocated():
    net = limits.build_on_meta(_component(_Stack), {"blocks": 3, "width": 8})
    assert {p.device.type for p in net.parameters()} == {"meta"}
    assert limits.parameter_count(net) == 3 * (8 * 8 * 9 + 8)


def test_budget_for_a_file_is_the_file():
    state = {f"t{i}": torch.zeros(10) for i in range(5)}
    budget = limits.Budget.for_state(state)
    assert budget.tensors == 2 * 5 + 64 and budget.values == 2 * 50 + 1_000_000


def test_weight_file_metadata_that_lies_about_the_size_is_refused_before_building(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    from restorekit.plugins import registry
    from restorekit.weights import WeightInfo, WeightsError, load_network, save_weights

    args = {"num_features": 8, "num_blocks": 1, "scale": 2}
    save_weights(registry("generators").build("srresnet", **args), tmp_path / "ok.safetensors",
                 WeightInfo("srresnet", args, task="super_resolution", scale=2))  # fmt: skip
    with safe_open(str(tmp_path / "ok.safetensors"), "pt") as handle:
        meta, tensors = handle.metadata(), {k: handle.get_tensor(k) for k in handle.keys()}
    for label, lie, expected in [
        ("huge", {**args, "num_blocks": 10**9}, "forged metadata"),
        ("other", {**args, "num_blocks": 2}, "weights do not fit the network the metadata describes"),
    ]:
        record = json.loads(meta["descriptor"])
        record["args"] = lie
        save_file(tensors, str(tmp_path / f"{label}.safetensors"),
                  metadata={**meta, "args": json.dumps(lie), "descriptor": json.dumps(record)})  # fmt: skip
        start = time.perf_counter()
        with pytest.raises(WeightsError, match=expected) as info:
            load_network(tmp_path / f"{label}.safetensors")
        assert str(info.value).startswith(str(tmp_path / f"{label}.safetensors"))
        assert time.perf_counter() - start < 30


def test_training_memory_bound_and_measurement():
    net = limits.build_on_meta(_component(_Stack), {"blocks": 2, "width": 8})
    cheap = limits.training_memory([(net, (4, 8, 16, 16), 16, 1)])
    assert not cheap.measured and cheap.weights == 16 * limits.parameter_count(net)
    measured = limits.training_memory([(net, (4, 8, 16, 16), 16, 1)], limit=1)
    assert measured.measured
    assert measured.activations == 2 * 4 * 8 * 16 * 16 * 4  # two conv outputs, fp32
    assert measured.activations <= cheap.activations  # the bound bounds


def test_memory_sizes_parse(monkeypatch):
    assert limits.parse_bytes("64GiB") == 64 * 1024**3 and limits.parse_bytes("500MB") == 500 * 1000**2
    assert limits.parse_bytes("0") is None and limits.parse_bytes("off") is None
    with pytest.raises(limits.SizeLimitError, match="RESTOREKIT_MAX_MEMORY"):
        limits.parse_bytes("lots")
    monkeypatch.setenv(limits.MAX_MEMORY_ENV, "2GiB")
    assert limits.memory_limit(torch.device("cpu")) == (2 * 1024**3, limits.MAX_MEMORY_ENV)
    monkeypatch.delenv(limits.MAX_MEMORY_ENV)
    limit, source = limits.memory_limit(torch.device("cpu"))
    assert limit is not None and limit > 2**28 and source == "this machine's memory"


# --- out of memory, build paths, control characters ---------------------------------------------------


def test_out_of_memory_becomes_advice_for_the_command():
    cpu = RuntimeError(
        "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you tried to "
        "allocate 36000000000000 bytes. Error code 12 (Cannot allocate memory)"
    )
    cuda = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.1 GiB total capacity)")
    for exc in (cpu, cuda, MemoryError()):
        assert is_out_of_memory(exc)
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    line = out_of_memory_message(cpu, "run")
    assert line.startswith("not enough memory (an allocation of 32.7 TiB failed); lower data.batch_size")
    assert "alloc_cpu" not in line
    assert out_of_memory_message(cuda, "apply").startswith("not enough GPU memory (an allocation of 2.00 GiB failed); use a smaller --tile")
    assert "--tile or --batch" in out_of_memory_message(MemoryError(), "evaluate")


def test_build_paths_of_libraries_are_scrubbed():
    text = (
        "boom [enforce fail at alloc_cpu.cpp:127] err (Triggered internally at /pytorch/aten/src/ATen/x.cpp:12.) in "
        "/usr/lib/python3/site-packages/torch/nn/conv.py:170 and /build/torch/csrc/y.cpp:40 end"
    )
    assert scrub(text) == "boom err in and end"
    assert scrub("photos/site/a.png: too small") == "photos/site/a.png: too small"


def test_printable_escapes_what_could_forge_a_line():
    assert printable("a\nerror: forged") == "a\\nerror: forged"
    assert printable("\x1b[2J\x07clear\r") == "\\x1b[2J\\x07clear\\r"
    assert printable("evil\u202egnp.exe") == "evil\\u202egnp.exe"
    assert printable("café photo 写真.png") == "café photo 写真.png"
    assert printable(printable("x\ty")) == printable("x\ty") == "x\\ty"
    assert printable(Path("dir") / "f\n.png") == "dir/f\\n.png"


def test_the_consoles_escape_strings_text_and_tables():
    from rich.table import Table
    from rich.text import Text

    out = io.StringIO()
    console = SafeConsole(file=out, highlight=False, width=200)
    table = Table(title="file\nerror: forged")
    table.add_column("name")
    table.add_row(Text("cell\x1b[31m"))
    table.add_row("row\nsplit")
    console.print("one\nline \x1b]0;title\x07", table)
    printed = out.getvalue()
    assert "\x1b" not in printed and "\x07" not in printed
    for shown in ("one\\nline \\x1b]0;title\\x07", "file\\nerror:", "cell\\x1b[31m", "row\\nsplit"):
        assert shown in printed


# --- images with several frames -------------------------------------------------------------------


def _frames(n: int = 3) -> list[Image.Image]:
    return [Image.fromarray(np.full((10, 12, 3), 60 * i, np.uint8)) for i in range(n)]


@pytest.mark.parametrize(("name", "kind"), [("a.gif", "animated GIF"), ("a.png", "APNG"), ("a.webp", "animated WebP"),
                                            ("a.tif", "multi-page TIFF")])  # fmt: skip
def test_multi_frame_images_are_refused_not_cut_to_the_first_frame(tmp_path, name, kind):
    from restorekit.data.images import ImageReadError, load_rgb, read_picture

    frames = _frames()
    frames[0].save(tmp_path / name, save_all=True, append_images=frames[1:], duration=50)
    for read in (read_picture, load_rgb):
        with pytest.raises(ImageReadError, match=f"has 3 frames .*{kind}.*other frames would be lost"):
            read(tmp_path / name)


def test_single_frames_previews_and_camera_extras_still_read(tmp_path):
    import tifffile

    from restorekit.data.images import read_picture

    frame = _frames(1)[0]
    frame.save(tmp_path / "still.gif")
    # A TIFF with a reduced-resolution preview page (NewSubfileType 1) is one image.
    with tifffile.TiffWriter(tmp_path / "preview.tif") as tif:
        tif.write(np.zeros((10, 12, 3), np.uint8))
        tif.write(np.zeros((5, 6, 3), np.uint8), subfiletype=1)
    # An MPO camera file's second image is a preview (or the other eye): the photo is the first.
    frame.save(tmp_path / "camera.mpo", format="MPO", save_all=True, append_images=_frames(2)[1:])
    for name in ("still.gif", "preview.tif", "camera.mpo"):
        assert tuple(read_picture(tmp_path / name).rgb.shape[-2:]) == (10, 12), name


# --- atomic writes, the umask, leftovers ------------------------------------------------------------


@pytest.fixture()
def umask_027():
    previous = os.umask(0o027)
    yield
    os.umask(previous)


def test_every_writer_follows_the_umask(tmp_path, umask_027):
    from restorekit.plugins import registry
    from restorekit.train.checkpoint import save_checkpoint
    from restorekit.train.reporting import save_preview, write_gif
    from restorekit.weights import WeightInfo, save_weights

    atomic_write_text(tmp_path / "recipe.toml", "x = 1\n")
    net = registry("generators").build("srresnet", num_features=4, num_blocks=1, scale=2)
    save_weights(net, tmp_path / "w.safetensors", WeightInfo("srresnet", {"num_features": 4, "num_blocks": 1, "scale": 2}))
    save_checkpoint(tmp_path / "step_1.ckpt", {"step": 1})
    save_preview(torch.rand(3, 8, 8), tmp_path / "p1.png")
    write_gif([tmp_path / "p1.png"], tmp_path / "previews.gif")
    for name in ("recipe.toml", "w.safetensors", "step_1.ckpt", "p1.png", "previews.gif"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o640, name


def test_a_live_writers_temporary_is_kept_and_a_dead_ones_removed(tmp_path):
    stale = tmp_path / ".old.png.k2j4x9_a.tmp"
    with atomic_path(tmp_path / "new.bin") as tmp:
        tmp.write_bytes(b"in progress")
        stale.write_bytes(b"left by a killed process")
        # Another process cleans the folder while this write is in flight.
        code = "import sys; from restorekit.fileio import remove_temporaries; print(len(remove_temporaries(sys.argv[1])))"
        done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True)
        assert done.stdout.strip() == "1"
        assert tmp.exists() and not stale.exists()
    assert (tmp_path / "new.bin").read_bytes() == b"in progress"
    assert not [p for p in tmp_path.iterdir() if TEMPORARY.match(p.name)]


def test_the_first_write_into_a_folder_removes_what_killed_writers_left(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / ".a_restored.png.0abcdefg.tmp").write_bytes(b"half")
    (folder / ".notes.txt").write_text("not ours")
    atomic_write_text(folder / "b.txt", "x")
    assert sorted(p.name for p in folder.iterdir()) == [".notes.txt", "b.txt"]
    assert remove_temporaries(folder) == []


# --- checkpoints, recipes, generator.init ---------------------------------------------------------------


def test_damaged_and_unsafe_checkpoints_are_one_clear_error(tmp_path):
    from restorekit.train.checkpoint import CheckpointError, load_checkpoint
    from restorekit.train.errors import TrainingError

    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"x": Payload()}, tmp_path / "unsafe.ckpt")
    (tmp_path / "text.ckpt").write_text("hello")
    torch.save({"format": "restorekit-checkpoint", "step": -1, "models": {}, "optimizers": {}, "rng": {}},
               tmp_path / "layout.ckpt")  # fmt: skip
    expected = {
        "unsafe.ckpt": "pickled Python objects beyond tensors",
        "text.ckpt": "it is a text file",
        "layout.ckpt": "step -1 is not a non-negative integer",
        "missing.ckpt": "no such checkpoint",
    }
    for name, message in expected.items():
        with pytest.raises(CheckpointError, match=message) as info:
            load_checkpoint(tmp_path / name)
        assert isinstance(info.value, (TrainingError, ValueError)) and str(info.value).startswith(str(tmp_path / name))


def _recipe(tmp_path: Path, text: str | bytes, name: str = "r.toml") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def test_recipes_in_other_encodings_and_non_finite_values(tmp_path, tiny_recipe):
    from restorekit.recipe import RecipeError, load_recipe

    good = tiny_recipe().read_text()
    for text, message in [
        (good.replace('name = "tiny"', 'name = "tiny"\ndescription = "caf\u00e9"').encode("latin-1"), "not UTF-8 text (byte 0xe9 on line 3)"),
        ("x = " + "[" * 30_000 + "]" * 30_000, "invalid TOML"),
    ]:  # fmt: skip
        with pytest.raises(RecipeError, match=re.escape(message)):
            load_recipe(_recipe(tmp_path, text))
    with pytest.raises(RecipeError) as info:
        load_recipe(tiny_recipe(), ["train.optim.generator.lr=inf", "losses.generator.pixel.weight=nan"])
    keys = {p.key for p in info.value.problems}
    assert keys == {"train.optim.generator.lr", "losses.generator.pixel.weight"}


def test_data_checks_on_request_name_the_file(tmp_path, tiny_recipe):
    from restorekit.recipe import RecipeError, load_recipe

    small = tmp_path / "small"
    small.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(small / "tiny.png")
    path = tiny_recipe()
    overrides = [f'data.val.hr="{small}"']
    assert load_recipe(path, overrides).data.val  # the Python API reads no images unless asked
    with pytest.raises(RecipeError) as info:
        load_recipe(path, overrides, check_data=True)
    (problem,) = info.value.problems
    assert problem.key == "data.val" and str(small / "tiny.png") in problem.message and "ssim" in problem.message
    assert load_recipe(path, check_data=True).name == "tiny"


def test_generator_init_takes_the_pth_files_its_schema_documents(tmp_path, tiny_recipe):
    from restorekit.plugins import registry
    from restorekit.recipe import load_recipe
    from restorekit.train.trainer import Trainer
    from restorekit.weights import read_weights

    args = {"num_features": 8, "num_blocks": 1, "growth_channels": 4, "scale": 2}
    source = registry("generators").build("rrdbnet", **args)
    torch.save({"params_ema": source.state_dict()}, tmp_path / "community.pth")  # a BasicSR-style file
    tensors, meta = read_weights(tmp_path / "community.pth")
    assert meta["format"] == "restorekit" and json.loads(meta["args"])["num_blocks"] == 1
    settings = ["generator.name=rrdbnet", "generator.args={ num_features = 8, num_blocks = 1, growth_channels = 4, scale = 2 }",
                f'generator.init="{tmp_path / "community.pth"}"']  # fmt: skip
    trainer = Trainer(load_recipe(tiny_recipe(), settings), quiet=True)
    for key, value in source.state_dict().items():
        assert torch.equal(trainer.generator.state_dict()[key].cpu(), value), key


def test_a_plugins_keyboard_interrupt_is_contained_where_ctrl_c_is_ignored():
    """A background job (``cmd &``) or nohup ignores SIGINT: a KeyboardInterrupt there can only be code's."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with pytest.raises(PluginError, match="KeyboardInterrupt"):
            call_plugin("evil", "import", _interrupt)
    finally:
        signal.signal(signal.SIGINT, previous)
