"""The web app: every endpoint and error status through FastAPI's test client, a real browser
(Playwright driving Debian's Chromium) against a live server, and load tests: the read-only routes
answer while explain requests queue, a full queue is 503 with Retry-After, memory stays flat."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import math
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from gradcam.web import create_app  # noqa: E402

skdata = pytest.importorskip("skimage.data")
CAT_CLASSES = range(281, 286)


def jpeg(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(create_app(max_upload=2_000_000))


@pytest.fixture(scope="module")
def cat() -> bytes:
    return jpeg(skdata.chelsea())


@pytest.fixture(scope="module")
def tiny() -> bytes:
    return jpeg(np.asarray(Image.fromarray(skdata.chelsea()).resize((96, 64))))


def explain(client, data: bytes, name: str = "cat.jpg", **form):
    return client.post("/api/explain", files={"image": (name, data, "image/jpeg")}, data=form)


def picture(url: str) -> Image.Image:
    assert url.startswith("data:image/png;base64,")
    with Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) as image:
        return image.copy()


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]


def test_read_endpoints(client):
    assert client.get("/healthz").json()["status"] == "ok"
    assert client.get("/api/models").json() == {"models": ["efficientnet_lite0"], "default": "efficientnet_lite0"}
    methods = client.get("/api/methods").json()["methods"]
    assert [m["name"] for m in methods][:2] == ["gradcam", "gradcam++"] and all(m["description"] for m in methods)
    layers = client.get("/api/layers", params={"model": "efficientnet_lite0"}).json()
    assert layers["automatic"] == "bn2" and {"name": "bn2", "shape": [1280, 7, 7]} in layers["layers"]
    assert len(client.get("/api/labels").json()["labels"]) == 1000
    luts = client.get("/api/colormaps").json()
    assert "jet" in luts["colormaps"] and len(luts["luts"]["jet"]) == 256
    assert "openapi" in client.get("/openapi.json").json() and client.get("/docs").status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and "gradcam" in page.text
    assert "http://" not in page.text and "https://" not in page.text  # no CDN, no external font
    assert client.get("/static/app.js").status_code == 200


def test_explain_returns_predictions_and_pictures(client, cat):
    response = explain(client, cat, method="gradcam", colormap="viridis", alpha="0.3")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["target"]["index"] in CAT_CLASSES and body["layer"] == "bn2" and body["map_kind"] == "heatmap"
    assert [t["index"] for t in body["top5"]][0] == body["target"]["index"] and len(body["top5"]) == 5
    assert body["image"] == body["display"] == {"width": 451, "height": 300}
    assert set(body["timings_ms"]) == {"queue", "decode", "explain", "render", "total"}
    assert set(body["pictures"]) == {"original", "map"}  # what the page uses: it colours the map itself
    assert picture(body["pictures"]["original"]).size == picture(body["pictures"]["map"]).size == (451, 300)
    assert picture(body["pictures"]["map"]).mode == "L"
    tiger = explain(client, cat, target="tiger cat").json()
    assert tiger["target"]["label"] == "tiger cat"
    by_index = explain(client, cat, target="281", method="scorecam").json()
    assert by_index["target"]["label"] == "tabby" and by_index["method"] == "scorecam"



def test_an_upload_gets_the_folder_jobs_row_and_map(client, cat, tmp_path):
    """The web app explains through the folder job's per-batch step: the same class, top 5, layer and map."""
    from gradcam.apps.pipeline.local import explain_folder

    (tmp_path / "cat.jpg").write_bytes(cat)
    explain_folder([tmp_path / "cat.jpg"], tmp_path / "out", method="hirescam", save=("grayscale",),
                   progress_bar=False)
    [row] = [json.loads(line) for line in (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()]
    body = explain(client, cat, method="hirescam").json()
    assert body["layer"] == row["layer"] and body["target"]["index"] == row["class_index"]
    assert [t["index"] for t in body["top5"]] == [i for i, _, _ in row["top5"]]
    assert body["target"]["probability"] == pytest.approx(row["probability"], abs=1e-5)
    with Image.open(row["files"]["grayscale"]) as written:
        assert np.abs(np.asarray(written, np.int16) - np.asarray(picture(body["pictures"]["map"]), np.int16)).max() <= 1

def test_large_upload_gets_display_size_pictures_and_a_full_resolution_download(client):
    from gradcam.apps.explainer import Explainer

    photo = np.asarray(Image.fromarray(skdata.chelsea()).resize((2000, 1500), Image.Resampling.BICUBIC))
    body = explain(client, jpeg(photo), colormap="viridis", alpha="0.3").json()
    assert body["image"] == {"width": 2000, "height": 1500}
    assert body["display"] == {"width": 1024, "height": 768}  # the long side capped at 1024
    assert all(picture(url).size == (1024, 768) for url in body["pictures"].values())
    overlay = client.get(body["downloads"]["overlay"], params={"alpha": "0.6"})
    assert overlay.status_code == 200 and overlay.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(overlay.content)).size == (2000, 1500)
    # the full-resolution map is the library's own, as before
    grey = Image.open(io.BytesIO(client.get(body["downloads"]["grayscale"]).content))
    library = Explainer(client.app.state.service.names[0]).explain([jpeg(photo)])[0]
    assert np.array_equal(np.asarray(grey), np.asarray(library.grayscale()))
    gone = client.get(body["downloads"]["overlay"].replace("/api/results/", "/api/results/x"))
    assert gone.status_code == 404 and "explain the photo again" in gone.json()["detail"]
    assert client.get(body["downloads"]["overlay"], params={"colormap": "jett"}).status_code == 422


def test_guided_maps_are_images_not_heat(client, cat):
    body = explain(client, cat, method="guided-backprop").json()
    assert body["map_kind"] == "image" and set(body["pictures"]) == {"original", "heatmap"}
    shown = np.asarray(picture(body["pictures"]["heatmap"]).convert("L"))
    assert 110 <= np.median(shown) <= 145  # the contrast-stretched gradient: a neutral grey background
    assert explain(client, cat, method="guided-gradcam").json()["map_kind"] == "image"


def test_multi_layer_requests_and_a_bounded_explainer_cache(tiny):
    client = TestClient(create_app())
    service = client.app.state.service
    response = explain(client, tiny, layer="blocks.5,bn2")
    assert response.status_code == 200, response.text
    assert response.json()["layer"] == "blocks.5,bn2"
    for bad in ("nope", "blocks.5,nope"):  # a failed layer leaves nothing cached
        response = explain(client, tiny, layer=bad)
        assert response.status_code == 422 and "nope" in response.json()["detail"]
    assert not [key for key in service.steps.keys() if "nope" in str(key)]
    layers = [f"blocks.{i}" for i in range(7)] + ["blocks", "conv_head", "bn2"]
    for method, layer in [("gradcam", layer) for layer in layers] + [("layercam", "bn2"), ("xgradcam", "bn2")]:
        assert explain(client, tiny, method=method, layer=layer).status_code == 200
        assert len(service.steps) <= 8
    assert (len(service.steps) == 8
            and ("efficientnet_lite0", "xgradcam", "bn2", "fp32") in service.steps.keys())


@pytest.mark.parametrize(
    "form, status, fragment",
    [
        ({"model": "resnet50"}, 422, "efficientnet_lite0"),
        ({"method": "gradcam+"}, 422, "gradcam++"),
        ({"layer": "blocks.99"}, 422, "blocks.6"),
        ({"target": "tigr cat"}, 422, "tiger cat"),
        ({"target": "5000"}, 422, "out of range"),
        ({"colormap": "jett"}, 422, "jet"),
        ({"alpha": "2"}, 422, "alpha"),
    ],
)
def test_bad_options_are_422_listing_choices(client, cat, form, status, fragment):
    response = explain(client, cat, **form)
    assert response.status_code == status and fragment in response.json()["detail"], response.text


def test_bad_uploads(client):
    assert explain(client, b"this is text").status_code == 415
    truncated = jpeg(skdata.coffee())[:2000]
    response = explain(client, truncated)
    assert response.status_code == 415 and "truncated" in response.json()["detail"].lower()
    too_big = explain(client, b"\xff" * 2_200_000)
    assert too_big.status_code == 413
    # a decompression bomb: a tiny PNG that declares 100k × 100k pixels
    bomb = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(bomb, "PNG")
    response = explain(client, bomb.getvalue(), name="bomb.png")
    assert response.status_code == 415 and "pixels" in response.json()["detail"]
    assert client.post("/api/explain", data={"method": "gradcam"}).status_code == 422  # no image


def test_nothing_from_a_request_is_written_to_disk(client, tmp_path, monkeypatch):
    temp, work = tmp_path / "tmp", tmp_path / "cwd"
    temp.mkdir(), work.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))  # where anything would put a temporary file
    monkeypatch.chdir(work)
    noise = io.BytesIO()  # a valid photo over 1 MB (Starlette spools those to an anonymous temporary file)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (700, 700, 3), dtype=np.uint8)).save(noise, "PNG")
    assert 1_100_000 < len(noise.getvalue()) < 2_000_000
    body = explain(client, noise.getvalue(), name="../noise.png").json()
    assert client.get(body["downloads"]["overlay"]).status_code == 200
    assert explain(client, b"this is text", name="text.jpg").status_code == 415
    assert explain(client, jpeg(skdata.coffee())[:2000], name="coffee.jpg").status_code == 415
    assert not list(temp.iterdir()) and not list(work.iterdir()) and not (tmp_path / "noise.png").exists()


def test_full_queue_is_503_with_retry_after_and_reads_stay_free(tiny):
    app = create_app(max_queue=1)
    service = app.state.service
    with TestClient(app) as client:
        assert explain(client, tiny).status_code == 200  # the model is loaded
        first = []
        with service.lock("efficientnet_lite0"):  # the model is busy: the next job waits for it
            waiting = threading.Thread(target=lambda: first.append(explain(client, tiny)))
            waiting.start()
            deadline = time.monotonic() + 30
            while client.get("/healthz").json()["queue"] != {"jobs": 1, "limit": 1}:
                assert time.monotonic() < deadline, "the first request was never queued"
                time.sleep(0.01)
            busy = explain(client, tiny)
            assert busy.status_code == 503 and int(busy.headers["retry-after"]) >= 1
            assert "busy" in busy.json()["detail"] and "try again" in busy.json()["detail"]
            for route in ("/healthz", "/api/models", "/api/layers", "/api/labels", "/api/methods"):
                assert client.get(route).status_code == 200  # no read waits for the model
        waiting.join(60)
        assert first[0].status_code == 200 and client.get("/healthz").json()["queue"]["jobs"] == 0


# ------------------------------------------------------------------------------- a live server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(options: str = ""):
    """A uvicorn server in its own process running ``create_app(<options>)``; yields (url, process).

    Its model uses one thread: the tests' clients need the other core (two intra-op threads on two
    shared cores stall each other, and the jobs' time would vary tenfold)."""
    import httpx

    port = free_port()
    log = tempfile.NamedTemporaryFile("w+b", prefix="gradcam-server-", suffix=".log")  # its stderr: the access log
    code = ("import torch, uvicorn; from gradcam.web import KEEP_ALIVE, create_app; torch.set_num_threads(1); "
            f"uvicorn.run(create_app({options}), host='127.0.0.1', port={port}, log_level='warning', "
            "timeout_keep_alive=KEEP_ALIVE)")  # as gradcam serve runs it
    process = subprocess.Popen([sys.executable, "-c", code], stderr=log)
    process.log = log.name
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    else:
        process.kill()
        pytest.fail("the server did not start: " + open(log.name, errors="replace").read()[-2000:])
    yield url, process
    process.terminate()
    process.wait(timeout=10)
    log.close()


@pytest.fixture(scope="module")
def server():
    yield from start_server()


@pytest.fixture(scope="module")
def deep_server():
    yield from start_server("max_queue=256")


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("Chromium is missing: `make test` installs it (apt-get install chromium)")
    return found


def test_browser_upload_explain_slider_and_method(server, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    url, _ = server
    photo = tmp_path / "chelsea.jpg"
    photo.write_bytes(jpeg(skdata.chelsea()))
    flags = ["--no-sandbox", "--disable-background-networking", "--disable-component-update",
             "--disable-default-apps", "--disable-sync", "--no-first-run", "--disable-extensions",
             "--metrics-recording-only", "--disable-dev-shm-usage"]
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), headless=True, args=flags)
        try:
            page = browser.new_page()
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url + "/")
            page.wait_for_function("document.querySelectorAll('#method option').length > 5")
            page.set_input_files("#file", str(photo))
            page.wait_for_function("(document.getElementById('overlay') || {}).naturalWidth > 0", timeout=60_000)
            top = page.text_content("#top-class")
            assert any(word in top for word in ("cat", "tabby")), top
            assert page.evaluate("document.getElementById('overlay').naturalWidth") == 451
            before = page.get_attribute("#overlay", "src")
            page.eval_on_selector("#alpha", "e => { e.value = '0.9'; e.dispatchEvent(new Event('input')); }")
            page.wait_for_function(f"document.getElementById('overlay').src !== {before!r}")
            with page.expect_download() as download:  # the overlay at the photo's own size, from the server
                page.click("#download")
            saved = tmp_path / "overlay.png"
            download.value.save_as(saved)
            assert download.value.suggested_filename == "chelsea_overlay.png" and Image.open(saved).size == (451, 300)
            page.select_option("#method", "gradcam++")
            page.wait_for_function("document.getElementById('details').textContent.includes('gradcam++')",
                                   timeout=60_000)
            page.select_option("#precision", "bf16")  # the page asks for bf16 and shows its result
            page.wait_for_function("state.result && state.result.precision === 'bf16'", timeout=60_000)
            page.select_option("#precision", "fp32")
            page.wait_for_function("state.result && state.result.precision === 'fp32'", timeout=60_000)
            page.click("#top5 li:nth-child(2) button")
            page.wait_for_function("!document.getElementById('top5').children[1] || "
                                   "document.getElementById('top5').children[1].className === 'current'",
                                   timeout=60_000)
            shot = tmp_path / "page.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            assert "error" not in (page.get_attribute("#status", "class") or "")
            # class search: the exact name first ('cardigan' is the sweater, 474; 'Cardigan' the corgi)
            page.fill("#class-search", "cardigan")
            page.dispatch_event("#class-search", "change")
            page.wait_for_function("document.getElementById('top-class').textContent.startsWith('cardigan')",
                                   timeout=60_000)
            page.fill("#class-search", "CARDIGAN")
            page.dispatch_event("#class-search", "change")
            status = page.text_content("#status")
            assert '"Cardigan" (264)' in status and '"cardigan" (474)' in status, status
            # a guided map is an image: shown as the server made it, never through the colormap
            page.select_option("#method", "guided-backprop")
            page.wait_for_function("document.getElementById('details').textContent.includes('guided-backprop')",
                                   timeout=60_000)
            assert page.evaluate("state.result.map_kind") == "image"
            assert page.evaluate("document.getElementById('heatmap').src === state.result.pictures.heatmap")
            assert page.is_disabled("#colormap")
            # a full queue: the page shows the server's message
            detail = "the server is busy: 32 requests are queued (the limit is 32); try again in 3 s"
            page.route("**/api/explain", lambda route: route.fulfill(
                status=503, headers={"Retry-After": "3"}, content_type="application/json",
                body=json.dumps({"detail": detail})))
            page.select_option("#method", "gradcam")
            page.wait_for_function("document.getElementById('status').className === 'error'", timeout=10_000)
            assert detail in page.text_content("#status")
            assert not errors
        finally:
            browser.close()


BROWSER_FLAGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update",
                 "--disable-default-apps", "--disable-sync", "--no-first-run", "--disable-extensions",
                 "--metrics-recording-only", "--disable-dev-shm-usage"]
GRID_READY = ("state.compare && document.querySelectorAll('#grid img.cell').length === {n} && "
              "[...document.querySelectorAll('#grid img.cell')].every(i => i.naturalWidth > 0)")


def small_photo(tmp_path) -> str:
    photo = tmp_path / "chelsea.jpg"
    photo.write_bytes(jpeg(np.asarray(Image.fromarray(skdata.chelsea()).resize((300, 200)))))
    return str(photo)


def test_browser_compare_grid_layer_slider_and_top_class(server, tmp_path):
    """The comparison grid lists /api/methods, shows one map per ticked method; a top class re-explains
    every map for it; the depth slider (by keyboard) moves every map to a shallower stage; the URL follows."""
    sync_api = pytest.importorskip("playwright.sync_api")
    url, _ = server
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), headless=True, args=BROWSER_FLAGS)
        try:
            bare = browser.new_page(viewport={"width": 1280, "height": 700}, java_script_enabled=False)
            bare.goto(url + "/")  # without its script: no broken image, no task's options, a notice
            assert bare.locator("img").count() == 0 and not bare.is_visible("#min-score")
            assert "needs JavaScript" in bare.inner_text("body")
            bare.screenshot(path=str(tmp_path / "no_script.png"), full_page=True)
            bare.close()
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url + "/")
            page.wait_for_function("document.body.dataset.ready === 'true'")
            assert page.evaluate("document.images.length") == 0  # nothing to show yet, no broken image
            assert not page.is_visible("#min-score") and not page.is_visible("#reference")
            page.check("input[name=view][value=compare]")
            assert page.is_visible("#compare-methods") and not page.is_visible("#method")
            listed = page.eval_on_selector_all("#method-boxes input", "boxes => boxes.map(b => b.value)")
            served = page.evaluate("fetch('/api/methods').then(r => r.json()).then(b => b.methods.map(m => m.name))")
            assert listed == served  # the methods the server has, none hard-coded
            wanted = ["gradcam", "hirescam", "layercam", "eigencam"]
            page.eval_on_selector_all("#method-boxes input", f"""boxes => boxes.forEach(b => {{
                b.checked = {wanted}.includes(b.value); b.dispatchEvent(new Event('change')); }})""")
            page.set_input_files("#file", small_photo(tmp_path))
            page.wait_for_function(GRID_READY.format(n=4), timeout=60_000)
            cells = page.eval_on_selector_all("#grid figure", "fs => fs.map(f => f.dataset.method)")
            assert cells == ["", *wanted]  # the photo, then the methods in their order
            assert any(word in page.text_content("#top-class") for word in ("cat", "tabby"))
            assert page.is_visible("#legend") and "1 · high" in page.text_content("#legend")
            assert "highest" in page.text_content("#legend-text")  # min-max: the scale is said
            assert "view=compare" in page.url and "methods=gradcam%2Chirescam%2Clayercam%2Ceigencam" in page.url
            page.screenshot(path=str(tmp_path / "compare.png"), full_page=True)
            # a top class re-explains every map for it
            second = page.evaluate("state.compare.top5[1]")
            first_maps = page.evaluate("state.compare.methods.map(e => e.map)")
            page.focus("#top5 li:nth-child(2) button")
            page.keyboard.press("Enter")
            page.wait_for_function(f"state.compare.target.index === {second['index']}", timeout=60_000)
            page.wait_for_function(GRID_READY.format(n=4))
            assert page.get_attribute("#top5 li:nth-child(2)", "class") == "current"
            assert page.evaluate("state.compare.methods.map(e => e.map)")[0] != first_maps[0]
            assert f"class={second['index']}" in page.url
            page.screenshot(path=str(tmp_path / "compare_class.png"), full_page=True)
            # the depth slider, by keyboard: the shallowest stage, the same class
            stages = page.evaluate("state.stages")
            assert stages[-1] == "bn2" and page.input_value("#stage") == str(len(stages) - 1)
            page.focus("#stage")
            page.keyboard.press("Home")
            page.wait_for_function(f"state.compare.methods.every(e => e.layer === {stages[0]!r})", timeout=60_000)
            page.wait_for_function(GRID_READY.format(n=4))
            assert page.evaluate("state.compare.target.index") == second["index"]
            assert page.input_value("#layer") == stages[0] and f"layer={stages[0]}" in page.url
            assert stages[0] in page.text_content("#stage-name")
            page.screenshot(path=str(tmp_path / "compare_shallow.png"), full_page=True)
            assert not errors and "error" not in (page.get_attribute("#status", "class") or "")
        finally:
            browser.close()


def test_browser_a_shared_url_restores_its_view(server, tmp_path):
    """A URL's view (methods, layer, class, colormap, scale) comes back once a photo is uploaded, on a
    phone-sized screen; a method that does not apply says why in its cell. The server logs each request."""
    sync_api = pytest.importorskip("playwright.sync_api")
    url, process = server
    photo = small_photo(tmp_path)
    shared = "/?view=compare&methods=gradcam%2Ccam%2Ceigencam&layer=blocks.4&class=281&colormap=viridis&normalize=max"
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), headless=True, args=BROWSER_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2)
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url + shared)
            page.wait_for_function("document.body.dataset.ready === 'true'")
            assert page.is_checked("input[name=view][value=compare]")
            ticked = page.eval_on_selector_all("#method-boxes input:checked", "bs => bs.map(b => b.value)")
            assert sorted(ticked) == ["cam", "eigencam", "gradcam"]
            assert page.input_value("#layer") == "blocks.4" and page.input_value("#colormap") == "viridis"
            assert page.input_value("#normalize") == "max" and page.input_value("#class-search") == "tabby"
            page.set_input_files("#file", photo)
            page.wait_for_function(GRID_READY.format(n=2), timeout=60_000)
            assert page.text_content("#top-class").startswith("tabby")
            assert page.evaluate("state.compare.methods.map(e => [e.method, e.status, e.layer || ''])") == [
                ["gradcam", "ok", "blocks.4"], ["cam", "skipped", ""], ["eigencam", "ok", "blocks.4"]]
            assert "not applicable" in page.text_content("#grid .skipped")
            assert "maximum" in page.text_content("#legend-text")  # the max scale is said
            assert page.evaluate("location.search") == shared[1:]  # the URL still describes this view
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, width  # nothing wider than the phone
            page.screenshot(path=str(tmp_path / "shared_phone.png"), full_page=True)
            # one method's view at 1280 px: method, layer, class and colormap from its URL
            page.set_viewport_size({"width": 1280, "height": 800})
            page.goto(url + "/?method=hirescam&layer=blocks.2&class=tiger%20cat&colormap=gray")
            page.wait_for_function("document.body.dataset.ready === 'true'")
            page.set_input_files("#file", photo)
            page.wait_for_function("state.result && (document.getElementById('overlay') || {}).naturalWidth > 0",
                                   timeout=60_000)
            assert page.text_content("#top-class").startswith("tiger cat")
            assert page.evaluate("[state.result.method, state.result.layer]") == ["hirescam", "blocks.2"]
            assert page.input_value("#colormap") == "gray" and "class=282" in page.url
            page.screenshot(path=str(tmp_path / "shared_single.png"), full_page=True)
            assert not errors and "error" not in (page.get_attribute("#status", "class") or "")
        finally:
            browser.close()
    log = open(process.log, errors="replace").read()
    assert re.search(r'"POST /api/compare" 200 \d+\.\d ms', log) and '"GET /static/app.js" 200' in log, log[-2000:]


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


class Poller(threading.Thread):
    """Polls read-only routes of a live server until stopped: their latencies and the deepest queue."""

    def __init__(self, url: str, routes=("/healthz", "/api/models")):
        super().__init__(daemon=True)
        self.url, self.routes = url, routes
        self.latencies, self.failures, self.deepest = [], [], 0
        self.stop = threading.Event()

    def __enter__(self) -> "Poller":
        self.start()
        return self

    def __exit__(self, *exc) -> None:  # stopped even when the load fails: no polls of a stopped server
        self.stop.set()
        self.join()

    def run(self):
        import httpx

        with httpx.Client(base_url=self.url, timeout=10) as http:
            while not self.stop.is_set():
                for route in self.routes:
                    start = time.perf_counter()
                    response = http.get(route)
                    self.latencies.append(time.perf_counter() - start)
                    if response.status_code != 200:
                        self.failures.append(f"{route}: {response.status_code}")
                    elif route == "/healthz":
                        self.deepest = max(self.deepest, response.json()["queue"]["jobs"])
                time.sleep(0.01)


def small_cat() -> bytes:
    return jpeg(np.asarray(Image.fromarray(skdata.chelsea()).resize((150, 100))))


def test_read_routes_answer_fast_with_200_explains_queued(deep_server):
    import httpx

    url, _ = deep_server
    small = small_cat()
    httpx.post(url + "/api/explain", files={"image": ("cat.jpg", small, "image/jpeg")}, timeout=120)  # loaded

    async def flood() -> list[int]:
        limits = httpx.Limits(max_connections=250, max_keepalive_connections=250)
        async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as http:
            responses = await asyncio.gather(*[
                http.post("/api/explain", files={"image": ("cat.jpg", small, "image/jpeg")}) for _ in range(200)])
        return [r.status_code for r in responses]

    with Poller(url) as poller:
        statuses = asyncio.run(flood())
    assert statuses == [200] * 200 and not poller.failures, poller.failures[:3]
    assert poller.deepest >= 100  # really queued while the reads were timed (the old pool had 40 threads)
    assert p99(poller.latencies) < 0.100, f"p99 {p99(poller.latencies) * 1000:.0f} ms"


def test_load_300_requests_from_50_clients(server):
    import httpx

    url, process = server
    small = small_cat()
    done, failures, busy, rss = [], [], [], {}

    async def client_loop(http: httpx.AsyncClient, queue: list):
        while queue:
            queue.pop()
            while True:
                response = await http.post("/api/explain", files={"image": ("cat.jpg", small, "image/jpeg")})
                if response.status_code != 503:
                    break
                busy.append(response.json()["detail"])
                await asyncio.sleep(int(response.headers["retry-after"]))  # honour it
            done.append(response.status_code)
            if response.status_code != 200 or response.json()["target"]["index"] not in CAT_CLASSES:
                failures.append(f"{response.status_code}: {response.text[:200]}")
            if len(done) == 50:
                rss["warm"] = rss_mib(process.pid)

    async def load():
        queue = list(range(300))
        limits = httpx.Limits(max_connections=60, max_keepalive_connections=60)
        async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:
            await asyncio.gather(*[client_loop(http, queue) for _ in range(50)])

    with Poller(url, routes=("/healthz",)) as poller:
        asyncio.run(load())
    end = rss_mib(process.pid)
    assert len(done) == 300 and not failures and not poller.failures, (failures + poller.failures)[:3]
    assert all("busy" in detail for detail in busy)
    assert p99(poller.latencies) < 0.100, f"healthz p99 {p99(poller.latencies) * 1000:.0f} ms"
    assert end < rss["warm"] * 1.10 + 30, (rss["warm"], end)  # no growth beyond a small margin


def test_uploads_need_a_length_and_targets_are_ascii_integers(client, cat):
    def chunks():
        yield b"--x\r\n"

    response = client.post("/api/explain", content=chunks(),
                           headers={"content-type": "multipart/form-data; boundary=x"})
    assert response.status_code == 411
    response = explain(client, cat, target="²")  # not an ASCII integer: a class name, and no such class
    assert response.status_code == 422 and "unknown class name" in response.json()["detail"]
    response = explain(client, cat, layer="nope")
    assert response.status_code == 422
    assert not [k for k in client.app.state.service.steps.keys() if k[2] == "nope"]  # nothing cached


def test_precision_over_http(client, cat):
    """bf16 through the API explains the same class with nearly the same map; a bad value is 422."""
    plain = explain(client, cat).json()
    fast = explain(client, cat, precision="bf16").json()
    assert fast["target"]["index"] == plain["target"]["index"]
    a = np.asarray(picture(plain["pictures"]["map"]), dtype=np.float64).ravel()
    b = np.asarray(picture(fast["pictures"]["map"]), dtype=np.float64).ravel()
    assert np.corrcoef(a, b)[0, 1] >= 0.99
    bad = explain(client, cat, precision="fp8")
    assert bad.status_code == 422 and "fp32" in bad.json()["detail"]


# ------------------------------------------------------------------------------- comparing methods


def compare(client, data: bytes, name: str = "cat.jpg", **form):
    return client.post("/api/compare", files={"image": (name, data, "image/jpeg")}, data=form)


def test_compare_gives_each_methods_own_map_and_one_prediction(client, tiny):
    """Each method's map in the grid is the map /api/explain gives for that method, for the same class."""
    body = compare(client, tiny, methods="gradcam,hirescam,eigencam").json()
    assert body.get("methods"), body
    assert [e["method"] for e in body["methods"]] == ["gradcam", "hirescam", "eigencam"]
    assert all(e["status"] == "ok" and e["layer"] == "bn2" and e["map_kind"] == "heatmap" for e in body["methods"])
    for entry in body["methods"]:
        alone = explain(client, tiny, name="cat.jpg", method=entry["method"]).json()
        assert alone["target"] == body["target"] and alone["top5"] == body["top5"]
        assert np.array_equal(np.asarray(picture(entry["map"])), np.asarray(picture(alone["pictures"]["map"])))
    assert picture(body["pictures"]["original"]).size == (96, 64) == picture(body["methods"][0]["map"]).size
    maps = [np.asarray(picture(e["map"]), np.int16) for e in body["methods"]]
    assert np.abs(maps[0] - maps[2]).max() > 20  # different methods: different maps, not one map three times
    # a chosen class and a layer: every method explains that class there, as /api/explain does
    chosen = compare(client, tiny, methods="layercam,gradcam", target="tiger cat", layer="blocks.4").json()
    assert chosen["target"]["label"] == "tiger cat" and {e["layer"] for e in chosen["methods"]} == {"blocks.4"}
    alone = explain(client, tiny, method="gradcam", target="282", layer="blocks.4").json()
    assert np.array_equal(np.asarray(picture(chosen["methods"][1]["map"])),
                          np.asarray(picture(alone["pictures"]["map"])))


def test_compare_a_method_that_does_not_apply_gives_its_reason(client, tiny):
    response = compare(client, tiny, methods="cam,gradcam", layer="blocks.5")
    assert response.status_code == 200, response.text
    cam, grad = response.json()["methods"]
    assert cam["method"] == "cam" and cam["status"] == "skipped" and "linear" in cam["reason"] and "map" not in cam
    assert grad["status"] == "ok" and response.json()["target"]["index"] in CAT_CLASSES


@pytest.mark.parametrize("methods, fragment", [
    (None, "compare 1 to 8 methods at once, got 9"),  # one more than the limit: 422, nothing explained
    ("gradcam,gradcam+", "unknown method 'gradcam+'"),
    (" , ", "compare 1 to 8"),
])
def test_compare_too_many_or_unknown_methods_is_422(client, tiny, methods, fragment):
    from gradcam.engine.methods import list_methods
    from gradcam.web.comparison import MAX_COMPARE

    assert MAX_COMPARE == 8 and client.get("/api/methods").json()["compare_max"] == 8
    response = compare(client, tiny, methods=methods or ",".join(list_methods()[:MAX_COMPARE + 1]))
    assert response.status_code == 422 and fragment in response.json()["detail"], response.text


def test_compare_bad_class_is_the_requests_error(client, tiny):
    response = compare(client, tiny, methods="gradcam,hirescam", target="tigr cat")
    assert response.status_code == 422 and "tiger cat" in response.json()["detail"]


def test_a_non_image_upload_is_415_naming_the_file(client):
    for route in ("/api/explain", "/api/compare"):
        response = client.post(route, files={"image": ("notes.txt", b"this is text", "text/plain")},
                               data={"methods": "gradcam"})
        detail = response.json()["detail"]
        assert response.status_code == 415 and detail.startswith("notes.txt: not a recognised image"), detail
        assert "<bytes>" not in detail


def test_layers_give_one_stage_per_resolution_for_the_slider(client):
    body = client.get("/api/layers").json()
    names = [layer["name"] for layer in body["layers"]]
    assert body["stages"][-1] == "bn2" and len(body["stages"]) >= 4 and set(body["stages"]) <= set(names)
    sides = [next(layer["shape"][-1] for layer in body["layers"] if layer["name"] == s) for s in body["stages"]]
    assert sides == sorted(sides, reverse=True) and len(set(sides)) == len(sides)  # shallow to deep


def test_every_request_is_logged(client, caplog):
    with caplog.at_level("INFO", logger="gradcam.web"):
        client.get("/healthz")
        client.get("/api/nothing-here")
    lines = [r.getMessage() for r in caplog.records if r.name == "gradcam.web"]
    assert any('"GET /healthz" 200' in line and line.endswith(" ms") for line in lines), lines
    assert any('"GET /api/nothing-here" 404' in line for line in lines), lines


def test_the_page_shows_nothing_unready_before_its_script_runs(client):
    """No <img> without a src (a broken-image icon), every task's options and every result hidden."""
    html = client.get("/").text
    assert "<img" not in html
    options = re.findall(r"<label class=\"task-option[^>]*>", html)
    assert len(options) == 3 and all(" hidden" in tag for tag in options), options
    for section in ("prediction", "pictures", "grid", "task-result", "legend", "compare-methods"):
        tag = re.search(rf"<\w+ id=\"{section}\"[^>]*>", html).group(0)
        assert " hidden" in tag, tag
    labelled = re.findall(r"<(select|input)\b[^>]*>", html)
    assert labelled and html.count("<label") + html.count("<legend") >= len(labelled)
