"""Convolution kernels for the FFT engines, built once per preset on the host, used on the device.

Kernels live on the full torus grid with wrap-around distances (the kernel centre at index (0, 0)),
so their real FFT multiplies the state's spectrum directly with no shift. Shapes follow the
prototype plug-in: Lenia's multi-peak Gaussian rings, SmoothLife's logistic disc and annulus, and
MNCA's logistic-edged rings, each normalised to sum 1 (a weighted average).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ca_server.xp import Backend

# Slope of the logistic edges of SmoothLife and MNCA kernels (prototype: 1/(1+e^{5(d-r)})).
EDGE_SLOPE = 5.0


def torus_distance(height: int, width: int) -> np.ndarray:
    """Distance of every cell to (0, 0) on a torus; (height, width) float64, host."""
    y = np.fft.fftfreq(height, 1.0 / height)[:, None]
    x = np.fft.fftfreq(width, 1.0 / width)[None, :]
    return np.sqrt(x * x + y * y)


def _logistic(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free 1/(1+e^-x)


def lenia_kernel(
    distance: np.ndarray, radius: float, peaks: Sequence[float], widths: Sequence[float]
) -> np.ndarray:
    """K(r) = sum_i exp(-((r/R - peak_i)/width_i)^2 / 2) for r <= R, else 0; host float64."""
    r = distance / radius
    kernel = np.zeros_like(r)
    for peak, width in zip(peaks, widths, strict=True):
        kernel += np.exp(-0.5 * ((r - peak) / width) ** 2)
    kernel[r > 1.0] = 0.0
    return kernel


def logistic_disc(distance: np.ndarray, radius: float) -> np.ndarray:
    """A disc of `radius` with a logistic edge of slope EDGE_SLOPE; host float64 in [0, 1]."""
    return _logistic(-EDGE_SLOPE * (distance - radius))


def logistic_ring(distance: np.ndarray, inner: float, outer: float) -> np.ndarray:
    """An annulus inner..outer with logistic edges; `inner == 0` gives a disc. Host float64."""
    ring = logistic_disc(distance, outer)
    if inner > 0:
        ring = ring * _logistic(EDGE_SLOPE * (distance - inner))
    return ring


def kernel_spectrum(backend: Backend, kernel: np.ndarray) -> Any:
    """rfft2 of `kernel` normalised to sum 1: (H, W//2+1) complex64 on the backend's device."""
    total = kernel.sum()
    if total <= 0:
        raise ValueError("kernel is empty; its radius is too small for this grid")
    device_kernel = backend.xp.asarray((kernel / total).astype(np.float32))
    spectrum = backend.fft.rfft2(device_kernel, **backend.fft_kwargs())
    return spectrum.astype(backend.xp.complex64, copy=False)


def kernel_spectra(backend: Backend, kernels: Sequence[np.ndarray]) -> Any:
    """The stacked spectra of `kernels` (each normalised to sum 1): (n, H, W//2+1) complex64."""
    xp = backend.xp
    spectra = [kernel_spectrum(backend, kernel) for kernel in kernels]
    stack = xp.empty((len(spectra), *spectra[0].shape), xp.complex64)
    for index, spectrum in enumerate(spectra):
        stack[index] = spectrum
    return stack


def irfft2_stacked(backend: Backend, products: Any, shape: tuple[int, int]) -> Any:
    """The inverse real FFTs of `products` ((n, H, W//2+1) complex64, overwritten) as one batched
    transform: (n, H, W) float32, C-contiguous, as the fused updates read it (one cuFFT call)."""
    kwargs = backend.fft_kwargs()
    return backend.fft.irfft2(products, s=shape, axes=(-2, -1), overwrite_x=True, **kwargs)


def irfft2_each(backend: Backend, products: Any, shape: tuple[int, int]) -> list[Any]:
    """The inverse real FFTs of `products` one at a time: n (H, W) float32 arrays. pocketfft is
    about 2x slower on a stack than on separate transforms, so the numpy passes use this."""
    kwargs = backend.fft_kwargs()
    return [
        backend.fft.irfft2(product, s=shape, overwrite_x=True, **kwargs) for product in products
    ]
