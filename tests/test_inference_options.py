"""Inference options as one value: validated once, one geometry rule, planned against a descriptor."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from restorekit.descriptor import ModelDescriptor
from restorekit.inference.model import RestorationModel
from restorekit.inference.options import (
    CLI_NAMES,
    DEFAULT_BATCH_SIZE,
    DEFAULT_OVERLAP,
    DEFAULT_TILE,
    InferenceOptions,
    InferenceOptionsError,
    check_geometry,
    render,
)
from restorekit.inference.tiling import tile_layout
from restorekit.weights import WeightInfo

# --- the value itself ---------------------------------------------------------------------------------


def test_defaults_come_from_one_place() -> None:
    options = InferenceOptions()
    assert (options.tile, options.overlap, options.batch_size, options.precision, options.device) == (
        "auto", "auto", DEFAULT_BATCH_SIZE, "auto", None,
    )  # fmt: skip
    assert options.tile_or_default == DEFAULT_TILE == 512
    assert options.overlap_or_default == DEFAULT_OVERLAP == 32
    assert not options.tile_given


def test_tile_zero_and_none_both_mean_whole_image_and_count_as_given() -> None:
    for tile in (0, None):
        options = InferenceOptions(tile=tile)
        assert options.tile is None and options.tile_given


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"tile": -1}, "tile must be a non-negative integer"),
        ({"tile": 12.5}, "tile must be a non-negative integer"),
        ({"tile": True}, "tile must be a non-negative integer"),
        ({"overlap": -2}, "overlap must be a non-negative integer"),
        ({"batch_size": 0}, "batch_size must be at least 1"),
        ({"precision": "fp8"}, "precision must be one of auto, fp32, fp16, bf16"),
        ({"device": "toaster"}, "device 'toaster' is not a device"),
        ({"tile": 30, "overlap": 12}, "tile 30 must be larger than 3 × overlap (36)"),
        ({"tile": 64}, "tile 64 must be larger than 3 × overlap (96)"),  # against the default overlap
    ],
)
def test_bad_values_are_one_line_errors_naming_the_option(changes: dict, needle: str) -> None:
    with pytest.raises(InferenceOptionsError) as caught:
        InferenceOptions(**changes)
    message = str(caught.value)
    assert needle in message and "\n" not in message
    assert isinstance(caught.value, ValueError)


def test_the_same_error_names_command_line_flags_for_the_cli() -> None:
    with pytest.raises(InferenceOptionsError) as caught:
        InferenceOptions(tile=30, overlap=12)
    cli = caught.value.render(CLI_NAMES)
    assert cli.startswith("--tile 30 must be larger than 3 × --overlap (36)")
    assert "`" not in cli and "`" not in str(caught.value)
    assert render("`batch_size` 0", CLI_NAMES) == "--batch 0"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_a_missing_cuda_device_is_refused_at_once() -> None:
    with pytest.raises(InferenceOptionsError, match="no CUDA device"):
        InferenceOptions(device="cuda")


def test_options_are_frozen_and_replace_validates_again() -> None:
    options = InferenceOptions(tile=256, overlap=16)
    with pytest.raises(AttributeError):
        options.tile = 128  # type: ignore[misc]
    assert options.replace(batch_size=2).batch_size == 2
    with pytest.raises(InferenceOptionsError):
        options.replace(tile=40)


# --- one geometry rule ----------------------------------------------------------------------------------


@pytest.mark.parametrize("multiple", [1, 2, 4, 8])
@pytest.mark.parametrize("overlap", [0, 1, 3, 5])
def test_geometry_rule_accepts_exactly_the_tiles_tile_layout_can_place(multiple: int, overlap: int) -> None:
    """check_geometry and tile_layout agree: accepted tiles advance, keep 3 × overlap shared, align."""
    for tile in range(1, 3 * overlap + 3 * multiple + 2):
        try:
            check_geometry(tile, overlap, multiple)
        except InferenceOptionsError:
            with pytest.raises(InferenceOptionsError):
                tile_layout(500, tile, overlap, multiple)
            continue
        spans = tile_layout(500, tile, overlap, multiple)
        assert spans[0][0] == 0 and spans[-1][1] == 500
        assert all(b_start > a_start for (a_start, _), (b_start, _) in zip(spans, spans[1:]))
        assert all(a_stop - b_start >= 3 * overlap for (_, a_stop), (b_start, _) in zip(spans, spans[1:]))
        assert all(start % multiple == 0 for start, _ in spans)
        # The smallest accepted tile is exactly 3 × overlap + multiple (rounded down to the multiple).
        assert tile - tile % multiple >= 3 * overlap + multiple


# --- planned against what the network is ------------------------------------------------------------


def describe(**facts: object) -> ModelDescriptor:
    return ModelDescriptor(name="net", **facts)  # type: ignore[arg-type]


def test_default_plan_for_a_tileable_network() -> None:
    plan = InferenceOptions().plan(describe())
    assert (plan.tile, plan.overlap, plan.multiple, plan.note, plan.warning) == (512, 32, 1, "", "")


def test_default_overlap_grows_to_the_receptive_field_margin_but_an_explicit_one_is_kept() -> None:
    assert InferenceOptions().plan(describe(tile_margin=40)).overlap == 40
    plan = InferenceOptions(overlap=8).plan(describe(tile_margin=10))
    assert plan.overlap == 8 and "below model 'net''s receptive-field margin of 10" in render(plan.warning)
    with pytest.raises(InferenceOptionsError, match="receptive-field margin of 100 pixels needs tile ≥ 301"):
        InferenceOptions(tile=256).plan(describe(tile_margin=100))


def test_whole_image_only_network_runs_whole_by_default_and_refuses_an_explicit_tile() -> None:
    described = describe(tiling="whole_image_only")
    plan = InferenceOptions().plan(described)
    assert plan.tile is None and "runs on whole images" in plan.note and plan.warning == ""
    assert InferenceOptions(tile=0).plan(described).note == ""  # the user asked for it: nothing to say
    with pytest.raises(InferenceOptionsError) as caught:
        InferenceOptions(tile=256).plan(described)
    assert "runs on whole images only" in caught.value.render(CLI_NAMES)
    assert "--tile 0" in caught.value.render(CLI_NAMES)


def test_tile_with_warning_network_tiles_and_warns() -> None:
    plan = InferenceOptions().plan(describe(tiling="tile_with_warning"))
    assert plan.tile == 512 and "slightly different results in tiles" in plan.warning
    assert InferenceOptions(tile=0).plan(describe(tiling="tile_with_warning")).warning == ""


def test_size_multiple_is_checked_once_the_network_is_known() -> None:
    options = InferenceOptions(tile=30, overlap=8)  # fine for any network with multiple 1 ...
    assert options.plan(describe()).tile == 30
    with pytest.raises(InferenceOptionsError, match="multiples of 8.*tile ≥ 32"):
        options.plan(describe(size_multiple=8))  # ... but 30 rounds down to 24 < 3 × 8 + 8


# --- RestorationModel takes the value (and the older keywords) ---------------------------------------


class Doubler(nn.Module):
    """Nearest x2 with one parameter; states its facts as attributes, like a plugin network."""

    scale = 2
    supports_fp16 = False

    def __init__(self) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gain * x.repeat_interleave(2, -1).repeat_interleave(2, -2)


def test_model_reads_network_facts_from_its_descriptor() -> None:
    model = RestorationModel(Doubler(), WeightInfo(name="doubler", args={}, task="super_resolution"), device="cpu")
    assert model.descriptor.scale == model.scale == 2
    assert model.descriptor.task == model.task == "super_resolution"
    assert model.in_channels == model.descriptor.in_channels == 3
    assert (model.tile, model.overlap, model.batch_size, model.dtype) == (512, 32, 4, torch.float32)
    assert tuple(model(torch.rand(3, 5, 7)).shape) == (3, 10, 14)


def test_options_value_and_older_keywords_give_the_same_model() -> None:
    info = WeightInfo(name="doubler", args={})
    options = InferenceOptions(tile=64, overlap=8, batch_size=2, precision="fp32", device="cpu")
    new = RestorationModel(Doubler(), info, options=options)
    old = RestorationModel(Doubler(), info, device="cpu", precision="fp32", tile=64, overlap=8, batch_size=2)
    assert new.options == old.options == options
    assert RestorationModel(Doubler(), info, tile=None).tile is None
    # A keyword lays itself over the options value.
    assert RestorationModel(Doubler(), info, options=options, batch_size=3).options.batch_size == 3
    with pytest.raises(InferenceOptionsError, match="tile 40 must be larger than 3 × overlap"):
        RestorationModel(Doubler(), info, tile=40, overlap=20)


def test_explicit_half_precision_the_network_does_not_support_is_refused() -> None:
    info = WeightInfo(name="doubler", args={})
    with pytest.raises(InferenceOptionsError, match="does not support precision fp16"):
        RestorationModel(Doubler(), info, precision="fp16", device="cpu")
    assert RestorationModel(Doubler(), info, precision="auto", device="cpu").dtype == torch.float32
