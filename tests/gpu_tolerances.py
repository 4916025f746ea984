"""How far the `gpu`-marked tests let a GPU result stray from numpy's, in one place.

Sized on the CPU by tests/ca/test_gpu_numerics.py, which builds the fused kernels the way NVRTC
compiles them under CuPy (fused multiply-adds contracted, denormals flushed: tests/host_cuda.py's
"gpu" numerics) and measures what that alone changes; each bound is at least 10x that, the rest
being for what the CPU cannot reproduce (cuFFT's rounding against pocketfft's, the GPU's expf
within 2 ulp). Measured 2026-12-03 (g++ 12, x86-64 with FMA), noted beside each.
"""

from __future__ import annotations

# Engines, 3 steps at 256² (test_gpu.test_one_step_agrees_with_numpy): cells differing by more
# than ENGINE_CELL_ATOL must be fewer than ENGINE_CELL_FRACTION (a threshold rule, MNCA or
# narrow-band Lenia, may tip a few cells on round-off). FMA + FTZ alone: max 7.8e-7 (coral).
ENGINE_CELL_ATOL = 1e-4
ENGINE_CELL_FRACTION = 0.002

# Renderer, 256² (test_render_gpu.test_renderer_agrees_with_numpy): a pixel changes only where its
# palette index lands on a bin edge, then by one table step (at most 16 levels). FMA + FTZ alone:
# 1.5e-5 of pixels by 1 level, mean 1e-5.
RENDER_CHANGED_PIXELS = 1e-3
RENDER_MAX_LEVELS = 16
RENDER_MEAN_LEVELS = 0.01

# Flow, 10 advections at 256² (test_render_gpu.test_flow_agrees_with_numpy). FMA + FTZ: 1.2e-7.
FLOW_ATOL = 1e-5
