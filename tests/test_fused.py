"""The concatenation-free dense block of the CPU fast path: the plain block's result, only inside a runner."""

from __future__ import annotations

import sys

import pytest
import torch
from torch import nn

from plugins.esrgan.rrdbnet import RRDBNet, ResidualDenseBlock
from plugins.rdn.rdn import ResidualDenseBlock as RDNBlock
from restorekit.inference.fused import dense_block
from restorekit.inference.runner import NetworkRunner, fast_path_active

CPU = torch.device("cpu")
pytestmark = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="needs oneDNN")


def plain_and_fast(module: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.inference_mode():
        plain = module(x)
    fast = NetworkRunner(module, device=CPU)(x)
    return plain, fast


@pytest.mark.parametrize(("features", "growth", "size"), [(64, 32, (37, 53)), (16, 8, (20, 20)), (8, 24, (5, 9))])
def test_esrgan_dense_block_equals_the_plain_block(features: int, growth: int, size: tuple[int, int]) -> None:
    torch.manual_seed(features)
    block = ResidualDenseBlock(num_features=features, growth_channels=growth).eval()
    for conv in (block.conv1, block.conv2, block.conv3, block.conv4, block.conv5):
        nn.init.normal_(conv.bias, std=0.1)  # non-zero biases: the scaled bias must be right too
    x = torch.randn(2, features, *size)
    plain, fast = plain_and_fast(block, x)
    assert fast.shape == plain.shape
    assert float((fast - plain).abs().max()) < 1e-5 * max(1.0, float(plain.abs().max()))


def test_rdn_dense_block_with_its_1x1_fusion_equals_the_plain_block() -> None:
    torch.manual_seed(1)
    block = RDNBlock(G0=16, G=8, C=4).eval()
    x = torch.randn(1, 16, 23, 31)
    plain, fast = plain_and_fast(block, x)
    assert float((fast - plain).abs().max()) < 1e-5


def test_a_whole_rrdbnet_on_the_fast_path_uses_it_and_stays_close() -> None:
    torch.manual_seed(2)
    net = RRDBNet(num_features=16, num_blocks=2, growth_channels=8, scale=4).eval()
    calls = []
    original = ResidualDenseBlock.forward

    def counting(self: ResidualDenseBlock, x: torch.Tensor) -> torch.Tensor:
        calls.append(fast_path_active(x))
        return original(self, x)

    ResidualDenseBlock.forward = counting  # type: ignore[method-assign]
    try:
        x = torch.rand(1, 3, 24, 20)
        plain, fast = plain_and_fast(net, x)
    finally:
        ResidualDenseBlock.forward = original  # type: ignore[method-assign]
    assert calls.count(False) == 6 and calls.count(True) == 6  # 2 RRDBs x 3 blocks, plain then fast
    assert float((fast - plain).abs().max()) < 1e-5


def test_off_the_fast_path_it_declines_and_training_is_untouched() -> None:
    torch.manual_seed(3)
    block = ResidualDenseBlock(num_features=8, growth_channels=4)
    convs = (block.conv1, block.conv2, block.conv3, block.conv4, block.conv5)
    x = torch.randn(1, 8, 12, 12)
    with torch.inference_mode():
        assert dense_block(x, convs) is None  # not inside a runner
    out = block(x.requires_grad_())
    out.sum().backward()  # the plain block, with autograd
    assert block.conv1.weight.grad is not None and x.grad is not None


def test_a_block_that_is_not_densely_connected_is_left_to_its_own_code() -> None:
    wrong = (nn.Conv2d(8, 4, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1))  # the second ignores the first's output
    strided = (nn.Conv2d(8, 4, 3, padding=1, stride=2), nn.Conv2d(12, 8, 3, padding=1))
    x = torch.randn(1, 8, 10, 10)

    class Probe(nn.Module):
        def __init__(self, convs: tuple[nn.Conv2d, ...]) -> None:
            super().__init__()
            self.convs = nn.ModuleList(convs)
            self.result: object = "unset"

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.result = dense_block(x, self.convs)
            return x

    for convs in (wrong, strided):
        probe = Probe(convs).eval()
        NetworkRunner(probe, device=CPU)(x)
        assert probe.result is None


def test_weights_changed_in_place_are_picked_up() -> None:
    torch.manual_seed(4)
    block = ResidualDenseBlock(num_features=8, growth_channels=4).eval()
    runner = NetworkRunner(block, device=CPU)
    x = torch.randn(1, 8, 9, 9)
    runner(x)
    with torch.no_grad():
        block.conv3.weight.mul_(3.0)
        block.conv5.bias.add_(0.5)
    with torch.inference_mode():
        plain = block(x)
    assert float((runner(x) - plain).abs().max()) < 1e-5


def test_an_unknown_activation_is_refused() -> None:
    with pytest.raises(ValueError, match="activation must be one of"):
        dense_block(torch.zeros(1, 1, 2, 2), (nn.Conv2d(1, 1, 1),), activation="gelu")


def test_a_block_that_ran_fused_can_still_be_copied_and_saved(tmp_path) -> None:
    import copy

    block = ResidualDenseBlock(num_features=8, growth_channels=4).eval()
    x = torch.randn(1, 8, 9, 9)
    expected = NetworkRunner(block, device=CPU)(x)
    twin = copy.deepcopy(block)  # the packed weight slices are not copied; they are made again
    torch.save(block.state_dict(), tmp_path / "block.pt")
    assert float((NetworkRunner(twin, device=CPU)(x) - expected).abs().max()) == 0


# --- feature maps reused from the heap ------------------------------------------------------------------


def _faults_of_big_maps(count: int = 4) -> int:
    """Minor page faults of making, touching and freeing a 96 MB tensor *count* times (after warming up)."""
    import resource

    for _ in range(3):
        torch.ones(24 << 20).sum()  # the first ones may grow the heap either way
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(count):
        torch.ones(24 << 20).sum()  # 96 MB: above glibc's largest dynamic mmap threshold (32 MiB)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@pytest.mark.skipif(not sys.platform.startswith("linux") or __import__("platform").libc_ver()[0] != "glibc",
                    reason="glibc's allocator only")  # fmt: skip
def test_inside_heap_reuse_big_blocks_are_reused_and_afterwards_given_back() -> None:
    from restorekit.inference.runner import _libc, heap_reuse

    if _libc() is None:
        pytest.skip("heap reuse switched off (RESTOREKIT_NO_HEAP_REUSE)")
    pages = (96 << 20) // 4096
    outside = _faults_of_big_maps()
    with heap_reuse(), heap_reuse():  # nestable
        inside = _faults_of_big_maps()
    after = _faults_of_big_maps()
    assert outside > 3 * pages  # each fresh mapping faults all its pages in
    assert inside < 2 * pages  # most blocks find a freed one's pages, already mapped
    assert after > 3 * pages  # usual behaviour again: nothing stays held between images
