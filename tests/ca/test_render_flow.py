"""Flow-field advection, containment masks and the resampling primitives, on numpy (and the
blur's uploads on tests/device_boundary.py's stand-in for CuPy)."""

from __future__ import annotations

import numpy as np
import pytest
from device_boundary import device_boundary_backend, watch

from ca_server.render import (
    FLOW_FIELD_NAMES,
    FlowAdvector,
    build_flow_fields,
    radial_containment,
    radial_distance,
)
from ca_server.render.resample import BilinearUpsampler, BoxDownsampler, GaussianBlur
from ca_server.xp import numpy_backend

H, W = 96, 128


@pytest.fixture(scope="module")
def backend():
    return numpy_backend(fft_workers=1)


def smooth_field(seed: int = 0) -> np.ndarray:
    """A smooth periodic random field, (H, W) float32 in about [0, 1]."""
    rng = np.random.default_rng(seed)
    spectrum = rng.standard_normal((H, W)) + 1j * rng.standard_normal((H, W))
    ky = np.fft.fftfreq(H)[:, None]
    kx = np.fft.fftfreq(W)[None, :]
    spectrum *= np.exp(-(ky**2 + kx**2) / (2 * 0.03**2))
    field = np.fft.ifft2(spectrum).real
    field = (field - field.min()) / (field.max() - field.min())
    return field.astype(np.float32)


def test_fields_have_the_documented_layout():
    fields = build_flow_fields(H, W)
    assert fields.shape == (7, 2, H, W) and fields.dtype == np.float32
    assert FLOW_FIELD_NAMES == (
        "radial", "rotate", "swirl", "bubble", "ring", "vortex", "vertical"
    )  # fmt: skip
    vertical = fields[FLOW_FIELD_NAMES.index("vertical")]
    assert (vertical[0] == 1).all() and (vertical[1] == 0).all()
    # rotate is tangential: orthogonal to the radial unit field everywhere.
    radial, rotate = fields[0], fields[1]
    assert np.abs((radial * rotate).sum(axis=0)).max() < 1e-5
    inside = radial_distance(H, W) < 1
    for k, name in enumerate(FLOW_FIELD_NAMES):
        speed = np.hypot(fields[k, 0], fields[k, 1])
        assert speed[inside].max() <= 1.0 + 1e-5, name


def test_no_strength_is_inactive_and_an_exact_copy(backend):
    flow = FlowAdvector(backend, H, W)
    assert not flow.active
    flow.set_strengths({"rotate": 0.0, "swirl": 1e-4})
    assert not flow.active
    field = smooth_field()
    out = flow.advect(field)
    assert out is not field
    np.testing.assert_array_equal(out, field)


def test_bad_strengths_are_clear_value_errors(backend):
    flow = FlowAdvector(backend, H, W)
    with pytest.raises(ValueError, match="unknown flow field 'spin'; valid names: radial, rotate"):
        flow.set_strengths({"spin": 0.5})
    with pytest.raises(ValueError, match=r"'ring' is 1.5; it must be in \[-1, 1\]"):
        flow.set_strengths({"ring": 1.5})
    with pytest.raises(ValueError, match="must be a number"):
        flow.set_strengths({"ring": True})
    with pytest.raises(ValueError, match="expected"):
        flow.advect(np.zeros((H + 1, W), np.float32))


def test_vertical_whole_pixel_drift_is_an_exact_wrapped_roll(backend):
    flow = FlowAdvector(backend, H, W)
    flow.set_strengths({"vertical": 1.0})  # 0.8 px per step
    flow.pixels_per_step = 1.0
    flow.set_strengths({"vertical": 1.0})  # exactly 1 px per step
    field = smooth_field()
    field[-1, :] = 5.0  # the bottom row must come back in at the top
    moved = flow.advect(field)
    np.testing.assert_allclose(moved, np.roll(field, 1, axis=0), atol=1e-6)
    assert (moved[0] == 5.0).all()


@pytest.mark.parametrize("strength", [0.5, -0.5])
def test_vertical_subpixel_drift_is_bilinear(backend, strength):
    flow = FlowAdvector(backend, H, W)
    flow.set_strengths({"vertical": strength})
    shift = 0.8 * strength  # px down (negative: up)
    field = smooth_field(1)
    neighbour = np.roll(field, int(np.sign(shift)), axis=0)
    expected = (1 - abs(shift)) * field + abs(shift) * neighbour
    np.testing.assert_allclose(flow.advect(field), expected, atol=1e-5)


def test_matches_map_coordinates_grid_wrap(backend):
    strengths = {"radial": -0.3, "rotate": 0.35, "swirl": 0.5, "bubble": 0.2, "ring": -0.2}
    flow = FlowAdvector(backend, H, W)
    flow.set_strengths(strengths)
    fields = build_flow_fields(H, W).astype(np.float64)
    names = list(FLOW_FIELD_NAMES)
    velocity = sum(0.8 * s * fields[names.index(n)] for n, s in strengths.items())
    rows, cols = np.mgrid[0:H, 0:W].astype(np.float64)
    coords = np.stack([rows - velocity[0], cols - velocity[1]])
    field = smooth_field(2)
    reference = backend.ndimage.map_coordinates(field, coords, order=1, mode="grid-wrap")
    np.testing.assert_allclose(flow.advect(field), reference, atol=1e-4)


def test_advect_in_place_and_mass_is_nearly_conserved(backend):
    flow = FlowAdvector(backend, H, W)
    flow.set_strengths({"rotate": 0.8, "vortex": -0.4, "vertical": 0.3})
    field = smooth_field(3)
    start = float(field.sum(dtype=np.float64))
    for _ in range(40):
        assert flow.advect(field, out=field) is field
    assert abs(float(field.sum(dtype=np.float64)) / start - 1) < 0.01
    constant = np.full((H, W), 0.25, np.float32)
    np.testing.assert_allclose(flow.advect(constant), 0.25, atol=1e-6)


def test_containment_fades_only_outside_the_inner_radius(backend):
    factor = radial_containment(backend, H, W, inner=0.35, outer=0.65, rate=0.05)
    assert factor.shape == (H, W) and factor.dtype == np.float32
    distance = radial_distance(H, W)
    np.testing.assert_array_equal(factor[distance <= 0.35], 1.0)
    np.testing.assert_allclose(factor[distance >= 0.65], 0.95, atol=1e-6)
    order = np.argsort(distance.ravel())
    assert (np.diff(factor.ravel()[order]) <= 1e-7).all()
    with pytest.raises(ValueError, match="inner < outer"):
        radial_containment(backend, H, W, inner=0.7, outer=0.6, rate=0.05)
    with pytest.raises(ValueError, match="rate"):
        radial_containment(backend, H, W, inner=0.1, outer=0.6, rate=1.5)


def test_box_downsampler_is_the_block_mean(backend):
    field = smooth_field(4)
    small = np.empty((H // 4, W // 4), np.float32)
    BoxDownsampler(backend, H, W, 4)(field, small)
    expected = field.reshape(H // 4, 4, W // 4, 4).mean(axis=(1, 3))
    np.testing.assert_allclose(small, expected, atol=1e-6)


@pytest.mark.parametrize("factor", [1, 2, 4, 8])
def test_bilinear_upsampler_matches_scipy_zoom_grid_wrap(backend, factor):
    small = smooth_field(5)[: H // 8, : W // 8].copy()
    out = np.empty((small.shape[0] * factor, small.shape[1] * factor), np.float32)
    BilinearUpsampler(backend, *small.shape, factor)(small, out)
    reference = backend.ndimage.zoom(small, factor, order=1, mode="grid-wrap", grid_mode=True)
    np.testing.assert_allclose(out, reference, atol=1e-5)
    before = out.copy()
    BilinearUpsampler(backend, *small.shape, factor)(small, out, scale=0.5, accumulate=True)
    np.testing.assert_allclose(out, 1.5 * before, atol=1e-5)


def test_gaussian_blur_is_scipys_gaussian_filter_bit_for_bit(backend):
    field = smooth_field(7) ** 3  # sharp peaks, so a wrong weight or edge shows
    blur, out = GaussianBlur(backend, (H, W)), np.empty((H, W), np.float32)
    for sigma in (0.5, 0.6, 1.7, 6.3, 0.6):  # bloom's and thickening's smallest, wider, repeated
        blur(field, sigma, out=out)
        reference = backend.ndimage.gaussian_filter(field, sigma, mode="wrap")
        np.testing.assert_array_equal(out, reference)
    assert not np.array_equal(out, field)


def test_gaussian_blur_uploads_its_weights_once_per_sigma():
    # On CuPy gaussian_filter uploads its weights on every call (tests/device_boundary.py models
    # that); GaussianBlur only when a sigma is new, i.e. not in a steady frame.
    backend = device_boundary_backend()
    field = backend.xp.asarray(smooth_field(8))
    blur, out = GaussianBlur(backend, (H, W)), backend.xp.empty((H, W), backend.xp.float32)
    calls = []
    for sigma in (1.7, 1.7, 6.3, 1.7, 6.3):
        with watch() as crossings:
            blur(field, sigma, out=out)
        calls.append([crossing.kind for crossing in crossings])
    assert calls == [["upload"], [], ["upload"], [], []]
    reference = numpy_backend().ndimage.gaussian_filter(np.asarray(field), 6.3, mode="wrap")
    np.testing.assert_allclose(np.asarray(out), reference, atol=1e-6)  # float32 weights on CuPy
    with watch() as crossings:
        backend.ndimage.gaussian_filter(field, 1.7, output=out, mode="wrap")
    assert [crossing.kind for crossing in crossings] == ["upload", "upload"]  # one per axis


def test_row_bands_do_not_change_the_result(backend, monkeypatch):
    import ca_server.render.flow as flow_module

    monkeypatch.setattr(flow_module, "CPU_BAND_PIXELS", 10**9)
    whole = FlowAdvector(backend, H, W)
    monkeypatch.setattr(flow_module, "CPU_BAND_PIXELS", 7 * W)  # 7-row bands, one ragged
    banded = FlowAdvector(backend, H, W)
    for flow in (whole, banded):
        flow.set_strengths({"swirl": 0.7, "ring": -0.4})
    field = smooth_field(6)
    np.testing.assert_array_equal(banded.advect(field), whole.advect(field))
