"""Band alignment: the resampling kernel, centroids, star refinement on simulated offsets, the real sample."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from astropy.wcs import WCS
from hypothesis import given, settings
from hypothesis import strategies as st

from sgc.cube.align import align_field, fit_correction
from sgc.cube.centroid import windowed_centroids
from sgc.cube.quality import catalog_stars, star_offsets
from sgc.cube.resample import identity_map, resample, wcs_pixel_map
from sgc.sdss.catalogs import read_catalog
from sgc.sdss.frames import read_frame
from sgc.sdss.names import BANDS

SHAPE = (400, 600)
PSF_SIGMA = 1.5


@dataclass(frozen=True)
class Band:
    """The two things alignment reads from a frame."""

    image: np.ndarray
    wcs: WCS


@dataclass(frozen=True)
class Scene:
    """Simulated sources in reference pixel coordinates."""

    star_x: np.ndarray
    star_y: np.ndarray
    star_flux: np.ndarray
    galaxy_x: np.ndarray
    galaxy_y: np.ndarray
    galaxy_flux: np.ndarray


def _scene(seed: int = 0) -> Scene:
    rng = np.random.default_rng(seed)
    ny, nx = SHAPE
    n_stars, n_galaxies = 100, 40
    return Scene(
        star_x=rng.uniform(15, nx - 15, n_stars),
        star_y=rng.uniform(15, ny - 15, n_stars),
        star_flux=10 ** rng.uniform(2.5, 4.5, n_stars),
        galaxy_x=rng.uniform(15, nx - 15, n_galaxies),
        galaxy_y=rng.uniform(15, ny - 15, n_galaxies),
        galaxy_flux=10 ** rng.uniform(3, 4.5, n_galaxies),
    )


def _gaussians(x: np.ndarray, y: np.ndarray, flux: np.ndarray, sigma: float) -> np.ndarray:
    image = np.zeros(SHAPE)
    half = int(np.ceil(6 * sigma))
    for cx, cy, f in zip(x, y, flux, strict=True):
        x0, y0 = int(round(cx)), int(round(cy))
        ys, xs = np.mgrid[y0 - half : y0 + half + 1, x0 - half : x0 + half + 1]
        inside = (xs >= 0) & (xs < SHAPE[1]) & (ys >= 0) & (ys < SHAPE[0])
        r2 = (xs - cx) ** 2 + (ys - cy) ** 2
        image[ys[inside], xs[inside]] += f / (2 * np.pi * sigma**2) * np.exp(-r2 / (2 * sigma**2))[inside]
    return image


def _render(scene: Scene, transform: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The scene seen through ``transform`` (2x3, reference -> band pixels), plus unit noise."""

    def move(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return transform @ np.stack([np.ones_like(x), x, y])

    sx, sy = move(scene.star_x, scene.star_y)
    gx, gy = move(scene.galaxy_x, scene.galaxy_y)
    image = _gaussians(sx, sy, scene.star_flux, PSF_SIGMA) + _gaussians(gx, gy, scene.galaxy_flux, 4.0)
    return (image + rng.normal(size=SHAPE)).astype(np.float32)


def _reference_wcs() -> WCS:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [180.0, 30.0]
    wcs.wcs.crpix = [SHAPE[1] / 2 + 1, SHAPE[0] / 2 + 1]
    wcs.wcs.cd = np.array([[-0.396, 0.0], [0.0, 0.396]]) / 3600
    return wcs


def _band_wcs(ref: WCS, transform: np.ndarray) -> WCS:
    """A WCS whose pixel mapping from ``ref`` is exactly the affine ``transform`` (2x3)."""
    linear, shift = transform[:, 1:], transform[:, 0]
    wcs = ref.deepcopy()
    wcs.wcs.cd = ref.wcs.cd @ np.linalg.inv(linear)
    wcs.wcs.crpix = linear @ (ref.wcs.crpix - 1) + shift + 1
    return wcs


def _transform(shift: tuple[float, float], angle: float) -> np.ndarray:
    """Reference -> band pixels: a rotation by ``angle`` about the image centre, then ``shift``."""
    centre = np.array([(SHAPE[1] - 1) / 2, (SHAPE[0] - 1) / 2])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return np.column_stack([centre - rotation @ centre + np.asarray(shift), rotation])


def _simulated_field(shift: tuple[float, float], angle: float, wcs_error: np.ndarray, seed: int = 0):
    """Five bands of one scene: i on the reference grid, the others moved by ``shift`` and ``angle``.

    Each band's WCS knows its true mapping except for ``wcs_error`` (px), as the real SDSS WCS do not.
    """
    scene, rng, ref_wcs = _scene(seed), np.random.default_rng(seed + 1), _reference_wcs()
    frames = {"i": Band(_render(scene, _transform((0, 0), 0), rng), ref_wcs)}
    believed = _transform(shift, angle)
    believed[:, 0] -= wcs_error
    for band in BANDS:
        if band != "i":
            frames[band] = Band(_render(scene, _transform(shift, angle), rng), _band_wcs(ref_wcs, believed))
    return scene, frames


def _bright_stars(scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    bright = scene.star_flux > np.median(scene.star_flux)
    return scene.star_x[bright], scene.star_y[bright]


def _correction_error(correction: np.ndarray, wcs_error: np.ndarray) -> float:
    """Largest distance over the image corners between a fitted correction and the true WCS error."""
    corners = np.array([[0, 0], [SHAPE[1] - 1, 0], [0, SHAPE[0] - 1], [SHAPE[1] - 1, SHAPE[0] - 1]], float)
    centre = np.array([(SHAPE[1] - 1) / 2, (SHAPE[0] - 1) / 2])
    fitted = correction[:, :1] + correction[:, 1:] @ (corners - centre).T
    return float(np.max(np.hypot(*(fitted - wcs_error[:, None]))))


# --- the resampling kernel ----------------------------------------------------------------------------


@pytest.mark.parametrize("kernel", ["lanczos3", "cubic"])
def test_identity_mapping_returns_the_input(kernel: str) -> None:
    image = np.random.default_rng(0).normal(size=(120, 200)).astype(np.float32)
    out, covered = resample(image, identity_map(image.shape, step=32), kernel)
    taps = 6 if kernel == "lanczos3" else 4
    inner = (slice(taps // 2 - 1, -taps // 2), slice(taps // 2 - 1, -taps // 2))
    assert covered[inner].all() and covered.sum() == covered[inner].size
    np.testing.assert_array_equal(out[covered], image[covered])
    assert np.isnan(out[~covered]).all()


@pytest.mark.parametrize("kernel", ["lanczos3", "cubic"])
def test_integer_shift_moves_pixels_exactly(kernel: str) -> None:
    image = np.random.default_rng(1).normal(size=(120, 200)).astype(np.float32)
    shifted = identity_map(image.shape, step=32).plus_affine(np.array([[3.0, 0, 0], [-2.0, 0, 0]]), (0, 0))
    out, covered = resample(image, shifted, kernel)
    expected = np.full_like(image, np.nan)
    expected[2:, :-3] = image[:-2, 3:]
    np.testing.assert_array_equal(out[covered], expected[covered])
    assert covered[10:-10, 10:-10].all()


def test_subpixel_rotated_mapping_matches_the_smooth_function() -> None:
    ys, xs = np.mgrid[0:200, 0:300].astype(float)

    def smooth(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.sin(x / 9) * np.cos(y / 7) + np.exp(-((x - 150) ** 2 + (y - 100) ** 2) / 18)

    mapping = identity_map((200, 300)).plus_affine(
        np.array([[0.37, -2e-6, -2e-3], [-0.81, 2e-3, -2e-6]]), (150, 100)
    )
    out, covered = resample(smooth(xs, ys).astype(np.float32), mapping)
    source_x, source_y = mapping.at(xs, ys)
    assert np.abs(out - smooth(source_x, source_y))[covered].max() < 0.01


def test_coverage_follows_the_kernel_support_at_the_edges() -> None:
    image = np.ones((100, 150), dtype=np.float32)
    mapping = identity_map(image.shape).plus_affine(np.array([[5.3, 0, 0], [-3.7, 0, 0]]), (0, 0))
    out, covered = resample(image, mapping, "lanczos3")
    # Source x = x + 5.3 needs taps up to floor(x + 5.3) + 3 <= 149: x <= 141; source y = y - 3.7 needs
    # taps from floor(y - 3.7) - 2 >= 0: y >= 6.
    assert covered[6:, :142].all()
    assert not covered[:, 142:].any() and not covered[:6].any()
    np.testing.assert_allclose(out[covered], 1.0, atol=1e-6)


def test_resample_refuses_a_flipped_mapping() -> None:
    flipped = identity_map((50, 60)).plus_affine(np.array([[0, -2.0, 0], [0, 0, 0]]), (30, 25))
    with pytest.raises(ValueError, match="flips"):
        resample(np.zeros((50, 60), dtype=np.float32), flipped)


def test_wcs_pixel_map_between_identical_wcs_is_the_identity() -> None:
    wcs = _reference_wcs()
    mapping = wcs_pixel_map(wcs, SHAPE, wcs)
    ys, xs = np.mgrid[0 : SHAPE[0] : 37, 0 : SHAPE[1] : 41].astype(float)
    np.testing.assert_allclose(np.stack(mapping.at(xs, ys)), np.stack([xs, ys]), atol=1e-6)


# --- centroids and the correction fit ------------------------------------------------------------------


def test_windowed_centroid_finds_a_gaussian_to_a_thousandth() -> None:
    image = _gaussians(np.array([100.37, 250.81]), np.array([200.12, 99.55]), np.array([1e4, 1e4]), 1.4)
    found = windowed_centroids(image, np.array([101.0, 250.0]), np.array([199.5, 100.3]), noise=1.0)
    np.testing.assert_allclose(found.x, [100.37, 250.81], atol=1e-3)
    np.testing.assert_allclose(found.y, [200.12, 99.55], atol=1e-3)
    np.testing.assert_allclose(found.size, 1.4, atol=0.02)


def test_correction_fit_rejects_outliers() -> None:
    rng = np.random.default_rng(3)
    x, y = rng.uniform(0, 600, 80), rng.uniform(0, 400, 80)
    dx = 0.3 + 1e-4 * (x - 300) + rng.normal(0, 0.01, 80)
    dy = -0.2 - 2e-4 * (y - 200) + rng.normal(0, 0.01, 80)
    dx[:15] += rng.uniform(0.5, 2, 15)  # blends and galaxies pulled off by their light
    coef, used = fit_correction(x, y, dx, dy, np.full(80, 0.01), (300, 200))
    assert not used[:15].any() and used[15:].mean() > 0.9
    np.testing.assert_allclose(coef[:, 0], [0.3, -0.2], atol=0.01)
    np.testing.assert_allclose(coef[:, 1:], [[1e-4, 0], [0, -2e-4]], atol=4e-5)


# --- alignment of simulated bands ------------------------------------------------------------------------


@settings(max_examples=6, deadline=None)
@given(
    shift=st.tuples(st.floats(-6, 6), st.floats(-6, 6)),
    angle=st.floats(-2e-3, 2e-3),
    error_length=st.floats(0.2, 0.5),
    error_angle=st.floats(0, 2 * np.pi),
)
def test_stars_recover_offsets_the_wcs_does_not_know(
    shift: tuple[float, float], angle: float, error_length: float, error_angle: float
) -> None:
    wcs_error = error_length * np.array([np.cos(error_angle), np.sin(error_angle)])
    scene, frames = _simulated_field(shift, angle, wcs_error)
    stars_x, stars_y = _bright_stars(scene)

    aligned = align_field(frames)
    offsets = star_offsets(aligned.cube, stars_x, stars_y)
    for band in ("u", "g", "r", "z"):
        diagnostics = aligned.diagnostics[band]
        assert diagnostics.method == "stars" and diagnostics.model == "affine" and diagnostics.n_stars >= 40
        assert _correction_error(diagnostics.correction, wcs_error) < 0.05
        assert offsets[band].systematic < 0.05

    wcs_only = star_offsets(align_field(frames, method="wcs").cube, stars_x, stars_y)
    for band in ("u", "g", "r", "z"):
        assert abs(wcs_only[band].systematic - error_length) < 0.05


def test_valid_marks_where_every_band_covers() -> None:
    _, frames = _simulated_field((5.3, -3.7), 0.0, np.zeros(2))
    aligned = align_field(frames, method="wcs")
    assert aligned.cube.shape == (5, *SHAPE) and aligned.cube.dtype == np.float32
    assert aligned.valid[10:-10, 10:-10].all()
    # The bands' x = x + 5.3 leaves the frame (with Lanczos-3 taps) from reference column 592, y = y - 3.7
    # before row 6.
    assert aligned.valid[6:, :592].all()
    assert not aligned.valid[:, 592:].any() and not aligned.valid[:6].any()
    assert np.isnan(aligned.cube[0, :, 595]).all()
    np.testing.assert_array_equal(aligned.cube[3], frames["i"].image)


def test_too_few_stars_fall_back_to_the_wcs_with_a_warning() -> None:
    rng = np.random.default_rng(5)
    wcs = _reference_wcs()
    frames = {band: Band(rng.normal(size=SHAPE).astype(np.float32), wcs) for band in BANDS}
    aligned = align_field(frames)
    assert aligned.diagnostics["g"].method == "wcs"
    assert "WCS alone" in aligned.diagnostics["g"].warning


# --- the real sample -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_field(sdss_dir: Path):
    folder = sdss_dir / "003918-3-0213"
    frames = {band: read_frame(folder / f"frame-{band}-003918-3-0213.fits.bz2") for band in BANDS}
    catalog = read_catalog(folder / "catalog-003918-3-0213.fits")
    return frames, catalog_stars(catalog, frames["i"].wcs, frames["i"].image)


@pytest.mark.real
def test_real_sample_meets_the_alignment_targets(real_field) -> None:
    frames, (stars_x, stars_y) = real_field
    unaligned = star_offsets(np.stack([frames[band].image for band in BANDS]), stars_x, stars_y)
    aligned = align_field(frames)
    offsets = star_offsets(aligned.cube, stars_x, stars_y)
    for band in ("g", "r", "z"):
        assert unaligned[band].median_offset > 3.0  # the measurement does see misaligned bands
        assert offsets[band].n >= 50
        assert offsets[band].systematic <= 0.05
        assert offsets[band].median_offset <= 0.12
    assert offsets["u"].median_offset <= 0.45
    assert aligned.valid.mean() > 0.97


@pytest.mark.real
def test_real_sample_wcs_alone_misses_the_systematic_target(real_field) -> None:
    frames, (stars_x, stars_y) = real_field
    offsets = star_offsets(align_field(frames, method="wcs").cube, stars_x, stars_y)
    assert max(offsets[band].systematic for band in ("g", "r", "z")) > 0.05


# --- colour term and cubic model (refraction and distortion over a whole field) -----------------------


def test_colour_term_puts_the_median_colour_star_right() -> None:
    rng = np.random.default_rng(7)
    n = 120
    x, y = rng.uniform(0, 2048, n), rng.uniform(0, 1489, n)
    colour = rng.gamma(2.0, 0.6, n)  # skewed, as the stellar locus is: mean and median differ
    # Refraction moves each star by 0.05 px per magnitude of colour along x, on top of a plain shift.
    dx = 0.3 + 0.05 * colour + rng.normal(0, 0.005, n)
    dy = -0.2 + rng.normal(0, 0.005, n)
    centre = (1023.5, 744.0)
    with_colour, _ = fit_correction(x, y, dx, dy, np.full(n, 0.005), centre, "affine", colour=colour)
    np.testing.assert_allclose(with_colour[:, 0], [0.3 + 0.05 * np.median(colour), -0.2], atol=0.003)
    # The residuals' median, which the alignment measure reads, is then zero.
    assert (
        abs(np.median(dx - with_colour[0, 0] - with_colour[0, 1:] @ [x - centre[0], y - centre[1]])) < 0.003
    )


@settings(max_examples=25, deadline=None)
@given(coef=st.lists(st.floats(-0.3, 0.3), min_size=20, max_size=20), seed=st.integers(0, 2**16))
def test_cubic_fit_round_trips_a_cubic_distortion(coef: list[float], seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 150
    x, y = rng.uniform(0, 2048, n), rng.uniform(0, 1489, n)
    centre = (1023.5, 744.0)
    truth = np.array(coef).reshape(2, 10)
    truth[:, 1:3] *= 1e-3  # slopes per pixel
    u, v = (x - centre[0]) / 1000, (y - centre[1]) / 1000
    basis = np.stack(
        [np.ones(n), x - centre[0], y - centre[1], u * u, u * v, v * v, u**3, u * u * v, u * v * v, v**3]
    )
    dx, dy = truth @ basis
    fitted, used = fit_correction(x, y, dx, dy, np.full(n, 0.01), centre, "cubic")
    assert used.all()
    np.testing.assert_allclose(fitted @ basis, truth @ basis, atol=1e-6)


def test_cubic_model_removes_a_distortion_the_wcs_does_not_hold() -> None:
    # A band distorted by a quadratic in the column (drift-scan optics), 0.3 px at the edges.
    scene = _scene(11)
    rng, ref_wcs = np.random.default_rng(12), _reference_wcs()

    def distorted(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        u = 2 * x / (SHAPE[1] - 1) - 1
        return x + 0.3 * (1.5 * u**2 - 0.5), y - 0.2 * (2.5 * u**3 - 1.5 * u)

    frames = {"i": Band(_render(scene, _transform((0, 0), 0), rng), ref_wcs)}
    sx, sy = distorted(scene.star_x, scene.star_y)
    gx, gy = distorted(scene.galaxy_x, scene.galaxy_y)
    for band in BANDS:
        if band != "i":
            image = _gaussians(sx, sy, scene.star_flux, PSF_SIGMA) + _gaussians(
                gx, gy, scene.galaxy_flux, 4.0
            )
            frames[band] = Band((image + rng.normal(size=SHAPE)).astype(np.float32), ref_wcs)
    stars_x, stars_y = _bright_stars(scene)
    affine = star_offsets(align_field(frames).cube, stars_x, stars_y)
    aligned = align_field(frames, model="cubic", colour=True)
    cubic = star_offsets(aligned.cube, stars_x, stars_y)
    assert aligned.diagnostics["g"].model == "cubic" and aligned.diagnostics["g"].correction.shape == (2, 10)
    for band in ("u", "g", "r", "z"):
        assert cubic[band].median_offset < 0.03 < affine[band].median_offset
        assert cubic[band].systematic < 0.02


def test_cubic_falls_back_to_affine_with_few_stars() -> None:
    scene, frames = _simulated_field((1.0, 2.0), 0.0, np.array([0.2, -0.1]))
    keep = 30  # fewer than the 40 a cubic needs, more than an affine's 20
    few = Scene(scene.star_x[:keep], scene.star_y[:keep], scene.star_flux[:keep] * 10, *([np.zeros(0)] * 3))
    rng, ref_wcs = np.random.default_rng(2), _reference_wcs()
    frames = {band: Band(_render(few, _transform((0, 0), 0), rng), ref_wcs) for band in BANDS}
    diagnostics = align_field(frames, model="cubic").diagnostics["g"]
    assert diagnostics.model == "affine" and "cubic" in diagnostics.warning
