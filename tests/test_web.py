"""The web app: every endpoint and error status through FastAPI's test client, a real browser
(Playwright driving Debian's Chromium) against a live server, and a bounded load test."""

from __future__ import annotations

import base64
import io
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


def explain(client, data: bytes, name: str = "cat.jpg", **form):
    return client.post("/api/explain", files={"image": (name, data, "image/jpeg")}, data=form)


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
    assert body["target"]["index"] in CAT_CLASSES and body["layer"] == "bn2"
    assert [t["index"] for t in body["top5"]][0] == body["target"]["index"] and len(body["top5"]) == 5
    assert body["image"] == {"width": 451, "height": 300}
    assert set(body["timings_ms"]) == {"decode", "explain", "render", "total"}
    for name in ("original", "map", "heatmap", "overlay"):
        url = body["pictures"][name]
        assert url.startswith("data:image/png;base64,")
        with Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) as picture:
            assert picture.size == (451, 300)
    tiger = explain(client, cat, target="tiger cat").json()
    assert tiger["target"]["label"] == "tiger cat"
    by_index = explain(client, cat, target="281", method="scorecam").json()
    assert by_index["target"]["label"] == "tabby" and by_index["method"] == "scorecam"


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
    assert explain(client, noise.getvalue(), name="../noise.png").status_code == 200
    assert explain(client, b"this is text", name="text.jpg").status_code == 415
    assert explain(client, jpeg(skdata.coffee())[:2000], name="coffee.jpg").status_code == 415
    assert not list(temp.iterdir()) and not list(work.iterdir()) and not (tmp_path / "noise.png").exists()


# ------------------------------------------------------------------------------- a live server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    port = free_port()
    code = ("import uvicorn; from gradcam.web import create_app; "
            f"uvicorn.run(create_app(), host='127.0.0.1', port={port}, log_level='warning')")
    process = subprocess.Popen([sys.executable, "-c", code])
    url = f"http://127.0.0.1:{port}"
    import httpx

    for _ in range(300):
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    else:
        process.kill()
        pytest.fail("the server did not start")
    yield url, process
    process.terminate()
    process.wait(timeout=10)


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
            page.wait_for_function("document.getElementById('overlay').naturalWidth > 0", timeout=60_000)
            top = page.text_content("#top-class")
            assert any(word in top for word in ("cat", "tabby")), top
            assert page.evaluate("document.getElementById('overlay').naturalWidth") == 451
            before = page.get_attribute("#overlay", "src")
            page.eval_on_selector("#alpha", "e => { e.value = '0.9'; e.dispatchEvent(new Event('input')); }")
            page.wait_for_function(f"document.getElementById('overlay').src !== {before!r}")
            page.select_option("#method", "gradcam++")
            page.wait_for_function("document.getElementById('details').textContent.includes('gradcam++')",
                                   timeout=60_000)
            page.click("#top5 li:nth-child(2) button")
            page.wait_for_function("!document.getElementById('top5').children[1] || "
                                   "document.getElementById('top5').children[1].className === 'current'",
                                   timeout=60_000)
            shot = tmp_path / "page.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            assert "error" not in (page.get_attribute("#status", "class") or "")
            assert not errors
        finally:
            browser.close()


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def test_load_200_requests_from_8_clients(server):
    import httpx

    url, process = server
    small = jpeg(np.asarray(Image.fromarray(skdata.chelsea()).resize((150, 100))))
    failures, done, lock = [], [], threading.Lock()
    after_20 = {}

    def client_loop(n: int):
        with httpx.Client(base_url=url, timeout=120) as http:
            for _ in range(n):
                response = http.post("/api/explain", files={"image": ("cat.jpg", small, "image/jpeg")})
                with lock:
                    done.append(1)
                    if response.status_code != 200 or response.json()["target"]["index"] not in CAT_CLASSES:
                        failures.append(response.text[:200])
                    if len(done) == 20:
                        after_20["rss"] = rss_mib(process.pid)
                if n and http.get("/healthz").status_code != 200:
                    failures.append("healthz")

    threads = [threading.Thread(target=client_loop, args=(25,)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(done) == 200 and not failures, failures[:3]
    assert rss_mib(process.pid) < after_20["rss"] * 1.10 + 30  # no growth beyond a small margin


def test_uploads_need_a_length_and_targets_are_ascii_integers(client, cat):
    def chunks():
        yield b"--x\r\n"

    response = client.post("/api/explain", content=chunks(), headers={"content-type": "multipart/form-data; boundary=x"})
    assert response.status_code == 411
    response = explain(client, cat, target="²")  # not an ASCII integer: a class name, and no such class
    assert response.status_code == 422 and "unknown class name" in response.json()["detail"]
    response = explain(client, cat, layer="nope")
    assert response.status_code == 422
    assert not [k for k in client.app.state.service._explainers if k[2] == "nope"]  # nothing cached
