"""The GPU memory cap's model holds what a preset change allocates, at every frame size.

No GPU here: tests/device_boundary.py counts the device arrays alive as CuPy's pool would
(DEVICE_POOL), on the GPU path's code (fused kernels compiled by g++). A change to another engine
is run through its crossfade at two sizes whose warm-up runs at full size (the largest warm-up
there is), and the growth of the pool's peak per frame pixel must stay within the model's
CHANGE_BYTES_PER_PIXEL (ca_server/config.py), which the default cap scales with. What the CPU
cannot see, cuFFT's work areas, is the model's FFT_WORK_BYTES_PER_PIXEL; the `gpu`-marked twin in
test_gpu.py checks a 2048² change under the scaled cap on a card.
"""

from __future__ import annotations

import gc

import numpy as np
import pytest
from device_boundary import DEVICE_POOL, device_boundary_backend
from host_cuda import compiler_available

from ca_server.config import (
    CHANGE_BYTES_PER_PIXEL,
    DEFAULT_VRAM_CAP_MB,
    MODEL_FIXED_MB,
    ServerConfig,
    change_memory_mb,
    scaled_vram_cap_mb,
)
from ca_server.simulation import Simulation

MIB = 2**20
SIZES = (128, 192)  # below 256 every warm-up runs at full size: the model's worst case


def change_peak_bytes(size: int, shown: str, incoming: str) -> int:
    """The device pool's peak while `shown` changes to `incoming` at size², through the fade."""
    sim = Simulation(
        device_boundary_backend(),
        width=size,
        height=size,
        preset=shown,
        warmup_steps_per_tick=200,
        crossfade_frames=10,
    )
    slot = np.empty((size, size, 3), np.uint8)
    for _ in range(3):
        sim.next_frame(host_out=slot)
    gc.collect()
    DEVICE_POOL.reset_peak()
    sim.set_preset(incoming)
    for _ in range(200):
        sim.next_frame(host_out=slot)
        if sim.showing == incoming and sim.arriving is None:
            break
    assert sim.showing == incoming and sim.change_error is None, sim.change_error
    return DEVICE_POOL.peak_bytes


@pytest.mark.skipif(not compiler_available(), reason="g++ is not installed")
@pytest.mark.parametrize(
    ("shown", "incoming"), [("sl_gliders", "mnca_worm"), ("mnca_worm", "coral")]
)
def test_a_change_grows_the_pool_by_at_most_the_modelled_bytes_per_pixel(shown, incoming):
    small, large = SIZES
    peaks = [change_peak_bytes(size, shown, incoming) for size in SIZES]
    per_pixel = (peaks[1] - peaks[0]) / (large * large - small * small)
    fixed_mb = (peaks[0] - per_pixel * small * small) / MIB
    assert 0 < per_pixel <= CHANGE_BYTES_PER_PIXEL, (
        f"{shown}->{incoming}: {per_pixel:.0f} B per pixel (peaks {peaks}): raise "
        "CHANGE_BYTES_PER_PIXEL or free what the change now holds"
    )
    assert fixed_mb <= MODEL_FIXED_MB, f"{shown}->{incoming}: {fixed_mb:.1f} MiB fixed"


def test_the_default_cap_scales_with_the_frame_and_keeps_1024_at_the_gpu_default():
    assert scaled_vram_cap_mb(1024, 1024) == DEFAULT_VRAM_CAP_MB  # the cap 1024² always had
    assert change_memory_mb(1024, 1024) < DEFAULT_VRAM_CAP_MB
    at_2048 = scaled_vram_cap_mb(2048, 2048)
    assert at_2048 >= change_memory_mb(2048, 2048) > DEFAULT_VRAM_CAP_MB  # 1024 would not fit
    assert ServerConfig(width=2048, height=2048).gpu_memory_cap_mb == at_2048
    assert ServerConfig().gpu_memory_cap_mb == DEFAULT_VRAM_CAP_MB  # GPU default size: 1024²
    assert ServerConfig(width=2048, height=2048, max_vram_mb=3000).gpu_memory_cap_mb == 3000


def test_an_explicit_cap_below_the_model_says_so():
    warning = ServerConfig(width=2048, height=2048, max_vram_mb=1024).memory_cap_warning()
    assert warning is not None and "--max-vram-mb 1024" in warning and "2048x2048" in warning
    assert ServerConfig(width=2048, height=2048).memory_cap_warning() is None
    assert ServerConfig(max_vram_mb=1024).memory_cap_warning() is None
