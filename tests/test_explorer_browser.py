"""The explorer page in a real headless Chromium (Debian's ``chromium`` and ``chromium-driver``,
driven by Selenium): it loads offline with no console error and no request, the image under
the pointer is the engine's decode there, two clicks draw the interpolation, the grid layer and
the choice of dimensions work. Skipped, saying how to install them, where there is no browser.

The tolerance is docs/explorer.md's: every pixel the page draws is round(255 x) of the
engine's decode x to within one grey level; the page's decode itself agrees with the engine's
float32 decode to 2e-5 (absolute, on values in [0, 1] or [-1, 1]).

``python tests/test_explorer_browser.py PAGE.html SHOT.png`` takes the screenshot of a page that
lesson 09 shows (lessons/figures/09_explorer.png), as described there.
"""
from __future__ import annotations

import base64
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from scratchvae.backend import to_host
from scratchvae.explorer import posterior_means, write_explorer
from scratchvae.models import build_vae

INSTALL = ("the explorer's browser tests need Chromium and Selenium: apt-get install chromium "
           "chromium-driver (Debian; as root) and pip install selenium")
GREY_LEVELS = 1      # pixels: round(255 x) of the engine's decode, within this many levels
DECODE_ATOL = 2e-5   # the page's decode against the engine's float32 decode
GRID = [-1.64, -1.2, -0.92, -0.7, -0.5, -0.33, -0.16, 0.0, 0.16, 0.33, 0.5, 0.7, 0.92, 1.2, 1.64]
FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
           "Bag", "Ankle boot"]


def browser_paths():
    """``(chromium, chromedriver)`` paths, or None where either is missing."""
    chrome = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    driver = shutil.which("chromedriver")
    return (chrome, driver) if chrome and driver else None


def start_browser(width=1400, height=1100):
    """A headless Chromium (``--no-sandbox``: the tests may run as root) logging the console
    and the network; skips the test, saying how to install, where it cannot start."""
    try:
        from selenium import webdriver
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip(INSTALL)
    paths = browser_paths()
    if paths is None:
        pytest.skip(INSTALL)
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}", "--force-device-scale-factor=1"):
        options.add_argument(arg)
    options.binary_location = paths[0]
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    try:
        return webdriver.Chrome(options=options, service=Service(paths[1]))
    except WebDriverException as exc:
        pytest.skip(f"Chromium did not start ({str(exc).splitlines()[0]}); {INSTALL}")


@pytest.fixture(scope="module")
def browser():
    driver = start_browser()
    yield driver
    driver.quit()


def open_page(driver, path):
    """Load ``path``; drop the logs of earlier pages; wait for the page's script."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get_log("browser"), driver.get_log("performance")
    driver.get(Path(path).resolve().as_uri())
    WebDriverWait(driver, 20).until(lambda d: d.execute_script("return !!window.explorer"))


def console_errors(driver):
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def requested_urls(driver):
    """Every URL the page asked the network stack for since the last call."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def tiny_model(name="paper-mlp", latent_dim=None, spread=1.0, **kw):
    """An untrained float32 model; ``spread`` scales the encoder's mean head so the test codes
    spread over the plane instead of sitting near 0."""
    vae = build_vae(name, latent_dim, seed=1, **kw)
    vae.params["head.mu.W"][...] *= spread
    return vae


def synthetic_images(n, shape=(1, 28, 28), seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n,) + tuple(shape)).astype(np.float32), rng.integers(0, 10, n)


def engine_image(vae, z, preprocess="unit"):
    """The engine's decode at z as (H, W, C) display values in [0, 1]."""
    x = to_host(vae.decode(np.asarray(z, dtype=vae.dtype)[None]))[0].astype(np.float64)
    if preprocess == "symmetric":
        x = (x + 1) / 2
    return np.clip(x.transpose(1, 2, 0), 0, 1)


def canvas_pixels(driver, element_id, x=0, y=0, w=None, h=None):
    """RGB (h, w, 3) uint8 of a canvas, read with getImageData (the values the page drew)."""
    b64 = driver.execute_script(
        """const c = document.getElementById(arguments[0]);
           const w = arguments[3] || c.width, h = arguments[4] || c.height;
           const d = c.getContext("2d").getImageData(arguments[1], arguments[2], w, h);
           let s = ""; for (let i = 0; i < d.data.length; i++) s += String.fromCharCode(d.data[i]);
           return [btoa(s), w, h];""", element_id, x, y, w, h)
    data, w, h = b64
    return np.frombuffer(base64.b64decode(data), np.uint8).reshape(h, w, 4)[:, :, :3]


def assert_shows(pixels, expected):
    """``pixels`` (H, W, 3) drawn for the display values ``expected`` (H, W, C), within GREY_LEVELS."""
    want = np.round(255 * expected)
    want = np.repeat(want, 3, axis=2) if want.shape[2] == 1 else want
    diff = np.abs(pixels.astype(np.int64) - want)
    assert diff.max() <= GREY_LEVELS, (f"{int((diff > GREY_LEVELS).sum())} pixel values differ by more "
                                       f"than {GREY_LEVELS} grey level(s), at most {int(diff.max())}")


def plot_geometry(driver):
    """(left, top, size, extent) of the plot, from the overlay's data attributes."""
    g = driver.execute_script("return Object.assign({}, document.getElementById('overlay').dataset)")
    return float(g["left"]), float(g["top"]), float(g["size"]), float(g["extent"])


def pixel_of(driver, z0, z1):
    """The viewport pixel (whole CSS pixels, as a pointer has them) nearest to latent (z0, z1),
    and the latent point at that pixel exactly: computed here from the plot's geometry and the
    overlay's place in the layout, not by the page's own code."""
    left, top, size, extent = plot_geometry(driver)
    rect = driver.execute_script("const r = document.getElementById('overlay').getBoundingClientRect();"
                                 "return [r.left, r.top]")
    cx = round(rect[0] + left + (z0 + extent) / (2 * extent) * size)
    cy = round(rect[1] + top + (extent - z1) / (2 * extent) * size)
    x, y = cx - rect[0], cy - rect[1]  # where the pointer lands in the overlay
    return (cx, cy), ((x - left) / size * 2 * extent - extent, extent - (y - top) / size * 2 * extent)


def _pointer(driver, cx, cy, click=False):
    from selenium.webdriver.common.actions.action_builder import ActionBuilder

    actions = ActionBuilder(driver)
    actions.pointer_action.move_to_location(cx, cy)
    if click:
        actions.pointer_action.click()
    actions.perform()


def move_to(driver, cx, cy):
    """Put the pointer at viewport pixel (cx, cy) and wait for the page to draw there."""
    from selenium.webdriver.support.ui import WebDriverWait

    before = driver.execute_script("return window.explorer.stats.updates")
    _pointer(driver, cx, cy)
    WebDriverWait(driver, 10).until(lambda d: d.execute_script("return window.explorer.stats.updates") > before)


def click_at(driver, cx, cy):
    _pointer(driver, cx, cy, click=True)


@pytest.fixture(scope="module")
def mlp_page(tmp_path_factory):
    vae = tiny_model("paper-mlp", spread=40.0)
    images, labels = synthetic_images(400)
    path = tmp_path_factory.mktemp("explorer") / "explorer.html"
    write_explorer(vae, images, labels, path, grid=GRID)
    return vae, images, labels, path


def test_page_loads_offline_with_no_console_error_and_no_request(browser, mlp_page, tmp_path):
    _, _, labels, path = mlp_page
    open_page(browser, path)
    (cx, cy), _ = pixel_of(browser, 0.3, -0.4)
    move_to(browser, cx, cy)
    click_at(browser, cx, cy)
    click_at(browser, cx + 40, cy - 30)
    browser.find_element("id", "show-grid").click()
    browser.save_screenshot(str(tmp_path / "explorer.png"))
    assert (tmp_path / "explorer.png").stat().st_size > 10_000
    assert console_errors(browser) == []
    page_url = path.resolve().as_uri()
    assert set(requested_urls(browser)) <= {page_url}, "the page asked for something besides itself"
    legend = browser.find_element("id", "legend").text
    assert f"3 ({int(np.sum(labels == 3))})" in legend  # the class and its count of test images


@pytest.mark.parametrize("model", ["paper-mlp", "paper-conv"])
def test_the_image_under_the_pointer_is_the_engine_decode_there(browser, tmp_path, model):
    vae = tiny_model(model, spread=20.0)
    images, labels = synthetic_images(50)
    path = tmp_path / "explorer.html"
    write_explorer(vae, images, labels, path, grid=GRID)
    open_page(browser, path)
    extent = plot_geometry(browser)[3]
    seen = []
    for target in [(0.7, -1.1), (-1.3, 0.4)]:
        (px, py), z = pixel_of(browser, *target)
        assert np.abs(np.subtract(z, target)).max() <= 2 * 2 * extent / 500  # within a pixel of the target
        move_to(browser, px, py)
        np.testing.assert_allclose(browser.execute_script("return window.explorer.state.z"), z, atol=1e-9)
        expected = engine_image(vae, z)
        assert expected.std() > 0.01  # an image with detail, not a flat field
        pixels = canvas_pixels(browser, "decoded")
        assert_shows(pixels, expected)
        seen.append(pixels)
    # the test can tell two points apart: the images at the two targets differ beyond the tolerance
    assert np.abs(seen[0].astype(int) - seen[1].astype(int)).max() > 3 * GREY_LEVELS
    assert console_errors(browser) == []


def randomize_batch_norm(vae, seed=0):
    """Running statistics and affine parameters away from their initial 0 and 1, so that a
    batch norm the page ignored or misread would show."""
    rng = np.random.default_rng(seed)
    for name, value in list(vae.buffers.items()) + list(vae.params.items()):
        if name.endswith(("running_mean", "beta")):
            value[...] = rng.normal(0, 0.3, value.shape)
        elif name.endswith(("running_var", "gamma")):
            value[...] = rng.uniform(0.5, 1.5, value.shape)


@pytest.mark.parametrize("model, kw, preprocess", [
    ("paper-mlp", {}, "unit"),
    ("paper-conv", {}, "unit"),
    ("tutorial-mlp", {}, "symmetric"),
    ("nll-conv", {}, "binarize"),
    ("paper-mlp", dict(latent_dim=3, likelihood="gaussian"), "unit"),
    ("resnet18-vae", dict(latent_dim=6, options=dict(widths=(4, 8, 8, 8), image_size=16)), "unit"),
])
def test_the_pages_decoder_is_the_engines(browser, tmp_path, model, kw, preprocess):
    """Every MNIST architecture, a Gaussian with a per-pixel variance (its mean: half the
    channels) and a small ResNet decoder (batch norm, residuals, upsampling, colour)."""
    vae = build_vae(model, seed=2, **kw)
    randomize_batch_norm(vae)
    images, labels = synthetic_images(20, vae.image_shape)
    path = tmp_path / "explorer.html"
    page = write_explorer(vae, images, labels, path, preprocess=preprocess)
    assert page.live
    open_page(browser, path)
    z = np.random.default_rng(3).normal(0, 1.5, (3, vae.latent_dim))
    for code in z:
        got = browser.execute_script("return window.explorer.decode(arguments[0])", code.tolist())
        c, h, w = vae.image_shape
        page_image = np.array(got["data"]).reshape(h, w, c).transpose(2, 0, 1)
        engine = to_host(vae.decode(code[None].astype(np.float32)))[0]
        np.testing.assert_allclose(page_image, engine, rtol=0, atol=DECODE_ATOL)
    assert console_errors(browser) == []


def test_two_clicks_draw_the_interpolation(browser, mlp_page):
    vae, _, _, path = mlp_page
    open_page(browser, path)
    browser.find_element("id", "show-points").click()  # hidden points: a click picks the place
    (ax, ay), za = pixel_of(browser, -1.5, 1.2)
    (bx, by), zb = pixel_of(browser, 1.4, -0.9)
    click_at(browser, ax, ay)
    click_at(browser, bx, by)
    assert browser.execute_script("return window.explorer.state.strip") == {"a": -1, "b": -1, "steps": 10}
    strip = canvas_pixels(browser, "strip")
    for j in (0, 4, 9):
        t = j / 9
        z = (1 - t) * np.array(za) + t * np.array(zb)
        assert_shows(strip[:, j * 32: j * 32 + 28], engine_image(vae, z))
    assert "From a = z = (" in browser.find_element("id", "strip-note").text
    assert console_errors(browser) == []


def isolated_points(driver, mu, min_px=9):
    """``[(index, (cx, cy)), ...]``: the test points at least ``min_px`` CSS pixels from every
    other, well inside the plot, with the viewport pixels nearest to them."""
    left, top, size, extent = plot_geometry(driver)
    xy = np.stack([left + (mu[:, 0] + extent) / (2 * extent) * size,
                   top + (extent - mu[:, 1]) / (2 * extent) * size], axis=1)
    d = np.hypot(*(xy[:, None] - xy[None]).transpose(2, 0, 1))
    d[np.diag_indices(len(xy))] = np.inf
    inside = np.all((xy > [left + 10, top + 10]) & (xy < [left + size - 10, top + size - 10]), axis=1)
    found = [(int(i), pixel_of(driver, *mu[i])[0]) for i in np.flatnonzero(inside & (d.min(axis=1) >= min_px))]
    assert len(found) >= 2, "fewer than two isolated test points to click"
    return found


def test_clicking_test_images_interpolates_between_their_codes(browser, mlp_page):
    vae, images, labels, path = mlp_page
    open_page(browser, path)
    mu = posterior_means(vae, images)
    (i, (ix, iy)), (j, (jx, jy)) = isolated_points(browser, mu)[::-1][:2]
    click_at(browser, ix, iy)
    click_at(browser, jx, jy)
    assert browser.execute_script("return window.explorer.state.strip") == {"a": i, "b": j, "steps": 10}
    strip = canvas_pixels(browser, "strip")
    assert_shows(strip[:, :28], engine_image(vae, mu[i]))        # t = 0: decode(mu(a))
    assert_shows(strip[:, 9 * 32:], engine_image(vae, mu[j]))    # t = 1: decode(mu(b))
    assert f"test image #{i} ({labels[i]})" in browser.find_element("id", "strip-note").text


def test_the_grid_layer_is_the_decoded_15x15_grid(browser, mlp_page):
    from selenium.webdriver.support.ui import WebDriverWait

    vae, _, _, path = mlp_page
    open_page(browser, path)
    before = canvas_pixels(browser, "plot")
    browser.find_element("id", "show-grid").click()
    WebDriverWait(browser, 20).until(lambda d: d.execute_script("return window.explorer.state.grid.done"))
    for k in (0, 7 * 15 + 7, 15 * 15 - 1):
        r, c = divmod(k, 15)
        tile = browser.execute_script(
            "const t = window.explorer.state.grid.tiles[arguments[0]];"
            "return Array.from(t.getContext('2d').getImageData(0, 0, t.width, t.height).data)", k)
        pixels = np.array(tile, np.uint8).reshape(28, 28, 4)[:, :, :3]
        assert_shows(pixels, engine_image(vae, [GRID[c], GRID[r]]))  # row r is z1 = GRID[r]
    assert np.abs(canvas_pixels(browser, "plot").astype(int) - before).max() > 50  # drawn on the plot


def test_choosing_two_of_five_dimensions_with_the_others_at_a_test_images_code(browser, tmp_path):
    from selenium.webdriver.support.ui import Select

    vae = tiny_model("paper-mlp", latent_dim=5, spread=40.0)
    images, labels = synthetic_images(200)
    path = tmp_path / "explorer.html"
    write_explorer(vae, images, labels, path, class_names=FASHION, grid=GRID)
    open_page(browser, path)
    note = browser.find_element("id", "slice-note").text
    assert "z₀ (across) and z₁ (up), 2 of the 5 latent dimensions; the other 3 are fixed at 0" in note
    Select(browser.find_element("id", "dim-x")).select_by_visible_text("z₃")
    mu = posterior_means(vae, images)
    i, (ix, iy) = isolated_points(browser, mu[:, [3, 1]])[0]
    click_at(browser, ix, iy)
    browser.find_element("id", "base-image").click()
    note = browser.find_element("id", "slice-note").text
    assert (f"z₃ (across) and z₁ (up), 2 of the 5 latent dimensions; the other 3 are fixed at the "
            f"code μ of test image #{i} ({FASHION[labels[i]]})") in note
    (px, py), (z3, z1) = pixel_of(browser, 0.6, -0.8)
    move_to(browser, px, py)
    z = mu[i].copy()
    z[3], z[1] = z3, z1
    np.testing.assert_allclose(browser.execute_script("return window.explorer.state.z"), z, atol=1e-6)
    assert_shows(canvas_pixels(browser, "decoded"), engine_image(vae, z))
    assert "Ankle boot" in browser.find_element("id", "legend").text
    assert console_errors(browser) == []


def test_a_one_dimensional_code_is_drawn_against_the_class(browser, tmp_path):
    vae = tiny_model("tutorial-mlp", latent_dim=1, spread=10.0)
    images, labels = synthetic_images(60)
    path = tmp_path / "explorer.html"
    write_explorer(vae, 2 * images - 1, labels, path, preprocess="symmetric", grid=GRID)
    open_page(browser, path)
    assert "z has 1 dimension, across; up is the class, jittered" in browser.find_element("id", "slice-note").text
    (cx, cy), (z0, _) = pixel_of(browser, 0.8, 0.0)
    move_to(browser, cx, cy)
    np.testing.assert_allclose(browser.execute_script("return window.explorer.state.z"), [z0], atol=1e-9)
    assert_shows(canvas_pixels(browser, "decoded"), engine_image(vae, [z0], "symmetric"))
    assert not browser.find_element("id", "show-grid").is_enabled()
    assert console_errors(browser) == []


def test_a_model_too_big_to_decode_in_the_page_says_what_it_shows(browser, tmp_path):
    vae = build_vae("resnet18-vae", latent_dim=8, seed=0, options=dict(widths=(4, 8, 8, 8), image_size=16))
    images, labels = synthetic_images(30, vae.image_shape)
    path = tmp_path / "explorer.html"
    page = write_explorer(vae, images, labels, path, grid=GRID, max_decode_macs=1000)
    assert not page.live and "multiply-adds per image" in page.note
    open_page(browser, path)
    about = browser.find_element("id", "about").text
    assert about.startswith("What this page can show for resnet18-vae (z has 8 dimensions)")
    assert "It cannot decode images: its decoder has" in about
    assert not browser.find_element("id", "decoded").is_displayed()
    assert not browser.find_element("id", "show-grid").is_enabled()
    (px, py), _ = pixel_of(browser, 0.5, 0.5)
    click_at(browser, px, py)
    assert console_errors(browser) == []


def screenshot(page, png, clicks=((-1.2, 1.0), (1.3, -1.2)), pointer=(0.4, 0.9), grid=False):
    """Open ``page``, click two points, rest the pointer, save ``png`` (lesson 09's picture)."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver = start_browser(1240, 1200)
    try:
        open_page(driver, page)
        if grid:
            driver.find_element("id", "show-grid").click()
            WebDriverWait(driver, 60).until(lambda d: d.execute_script("return window.explorer.state.grid.done"))
        for z in clicks:
            click_at(driver, *pixel_of(driver, *z)[0])
        move_to(driver, *pixel_of(driver, *pointer)[0])
        driver.save_screenshot(str(png))
    finally:
        driver.quit()


if __name__ == "__main__":
    screenshot(Path(sys.argv[1]), Path(sys.argv[2]))
