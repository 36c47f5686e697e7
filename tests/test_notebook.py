"""The notebooks run top to bottom on the CPU, and are stored without outputs: the tutorial, and Keras's."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "tutorial.ipynb"


def test_notebook_is_stored_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code and all(not cell.outputs and cell.execution_count is None for cell in code)


def test_notebook_runs_without_errors(tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError on the first failing cell
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert any("largest difference from the hand-made map" in o.get("text", "") for o in outputs)
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 5  # figures inline
    text = "".join(o.get("text", "") for o in outputs)
    trained = int(text.split("trained ")[1].split("%")[0])
    assert trained >= 90, text


KERAS = NOTEBOOK.with_name("keras.ipynb")


@pytest.mark.slow
def test_the_keras_notebook_trains_explains_and_points(tmp_path):
    if importlib.util.find_spec("keras") is None:  # not imported here: the kernel chooses Keras's backend
        pytest.skip("Keras is not installed (extra gradcam[keras])")
    nb = nbformat.read(KERAS, as_version=4)
    assert all(not c.outputs for c in nb.cells if c.cell_type == "code")
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    text = "".join(o.get("text", "") for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs)
    difference = float(text.split("largest difference from the Keras-way map: ")[1].split(" ")[0])
    pointing = int(text.split("the map's peak on the shape for ")[1].split("%")[0])
    assert difference < 1e-5 and pointing >= 85, text
    assert (tmp_path / "shapes.keras").is_file()
