"""The web app for other tasks: the API gives one overlay and one caption per object (boxes in display
pixels), bad options are 422 naming them, and in the page a click on a detected box shows that object's map."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
import task_nets  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from gradcam.web import create_app  # noqa: E402

NETS = Path(task_nets.__file__)


def png_bytes(width: int = 80, height: int = 60, seed: int = 0) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3),
                                                         dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def decode(url: str) -> Image.Image:
    with Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) as image:
        return image.copy()


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(create_app([f"{NETS}:DETR", f"{NETS}:Head"]))


def post(client, **form):
    files = {"image": ("photo.png", png_bytes(), "image/png")}
    if "reference" in form:
        files["reference"] = ("other.png", form.pop("reference"), "image/png")
    return client.post("/api/explain-task", files=files, data=form)


def test_detection_over_http_one_overlay_per_object(client):
    response = post(client, task="detection", min_score="0", layer="features")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["task"] == "detection" and body["display"] == {"width": 80, "height": 60}
    k = len(body["captions"])
    assert k >= 2 and len(body["boxes"]) == k and len(body["overlays"]) == k
    assert decode(body["pictures"]["objects"]).size == (80, 60)
    assert all(decode(o).size == (80, 60) for o in body["overlays"])
    assert len({o for o in body["overlays"]}) == k  # one map per object
    assert client.get("/api/tasks").json()["tasks"][0] == "classification"


def test_other_tasks_and_bad_options(client):
    head = f"{NETS}:Head"
    body = post(client, task="embedding", model=head, layer="features", reference=png_bytes(seed=1)).json()
    assert body["captions"][0].startswith("cosine similarity to ")
    down = post(client, task="regression", model=head, layer="features", negative="true").json()
    assert down["captions"][0].endswith("(what drives it down)")
    for form, fragment in (({"task": "counting"}, "unknown task 'counting'"),
                           ({"task": "detection", "box": "5,5,1,1"}, "box must be x0,y0,x1,y1"),
                           ({"task": "detection", "min_score": "2"}, "min_score must be in [0, 1]"),
                           ({"task": "embedding", "model": head, "layer": "features"}, "needs a reference image")):
        response = post(client, **form)
        assert response.status_code == 422 and fragment in response.json()["detail"], response.text


def test_clicking_a_detected_box_shows_that_objects_map(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    from test_web import chromium, start_server

    photo = tmp_path / "photo.png"
    photo.write_bytes(png_bytes(160, 120))
    servers = start_server(f"[{str(NETS) + ':DETR'!r}]")
    url, _ = next(servers)
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium(), headless=True, args=["--no-sandbox"])
            page = browser.new_page()
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url + "/")
            page.wait_for_function("document.querySelectorAll('#task option').length > 3")
            page.select_option("#task", "detection")
            assert page.is_visible("#min-score") and not page.is_visible("#reference")
            page.fill("#min-score", "0")
            page.set_input_files("#file", str(photo))
            page.wait_for_function("state.task && document.getElementById('task-picture').naturalWidth > 0",
                                   timeout=60_000)
            boxes = page.evaluate("state.task.boxes")
            captions = page.evaluate("state.task.captions")
            width = page.evaluate("document.getElementById('task-picture').clientWidth")
            scale = width / 160
            # a point inside one box only, else the smallest box containing it: that object's map
            areas = [(x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in boxes]
            k = int(np.argmin(areas))
            x0, y0, x1, y1 = boxes[k]
            page.click("#task-picture", position={"x": (x0 + x1) / 2 * scale, "y": (y0 + y1) / 2 * scale})
            assert page.text_content("#task-chosen") == captions[k]
            assert page.get_attribute("#task-overlay", "src") == page.evaluate(f"state.task.overlays[{k}]")
            assert not errors and "error" not in (page.get_attribute("#status", "class") or "")
            browser.close()
    finally:
        next(servers, None)
