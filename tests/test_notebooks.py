"""The analyst notebooks run top to bottom on the sample warehouse (they are stored without outputs)."""

from __future__ import annotations

import nbformat
import pytest
from nbclient import NotebookClient

from pipelines.cli import run_audit
from tests.conftest import REPO_ROOT

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))


@pytest.fixture(scope="module")
def sample_output(tmp_path_factory):
    out = tmp_path_factory.mktemp("notebooks") / "out"
    run_audit(REPO_ROOT / "data_samples", out, quiet=True)
    return out


def test_there_are_four_notebooks_stored_without_outputs():
    assert [p.name for p in NOTEBOOKS] == [
        "01_warehouse_tour.ipynb", "02_provider_drilldown.ipynb", "03_sensitivity.ipynb",
        "04_data_quality_review.ipynb"]
    for path in NOTEBOOKS:
        book = nbformat.read(path, as_version=4)
        assert all(not c.get("outputs") and c.get("execution_count") is None
                   for c in book.cells if c.cell_type == "code"), path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_top_to_bottom(sample_output, monkeypatch, path):
    monkeypatch.setenv("IMAGING_AUDIT_OUTPUT", str(sample_output))
    book = nbformat.read(path, as_version=4)
    client = NotebookClient(book, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()  # raises CellExecutionError on the first failing cell
    outputs = [o for c in book.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    # Plotly figures were produced (as the dashboards' own figure objects)
    assert any("application/vnd.plotly.v1+json" in o.get("data", {}) for o in outputs), path.name
