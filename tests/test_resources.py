"""Know before you run: estimate_resources, --dry-run and the memory check."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import sccluster as scc
from sccluster import InputError, cli
from sccluster.tl import _resources as R

RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results"


@pytest.mark.parametrize("name", ["scale-bgformer.csv", "scale-siamese.csv", "scale-baselines.csv"])
def test_memory_estimate_within_a_factor_of_1_5_of_the_scale_study(name):
    rows = pd.read_csv(RESULTS / name)
    rows = rows[(rows["status"] == "ok") & rows["pipeline"].str.startswith("sccluster ")]
    assert len(rows) >= 6
    for _, r in rows.iterrows():
        method = r["pipeline"].split(" ", 1)[1]
        cells = int(r["n_cells"])
        est = R.estimate_for_shape((cells, 2000, int(cells * R.COUNTS_PER_CELL)), method)
        ratio = est.peak_memory_gb * 1024 / r["peak_rss_mb"]
        assert 1 / 1.5 <= ratio <= 1.5, (method, cells, ratio)


def test_estimate_from_anndata_and_from_file_header(synthetic_adata, tmp_path):
    path = tmp_path / "in.h5ad"
    synthetic_adata.write_h5ad(path)
    from_file = scc.tl.estimate_resources(path, method="bgformer")
    from_memory = scc.tl.estimate_resources(synthetic_adata, method="bgformer")
    assert (from_file.n_obs, from_file.n_vars, from_file.n_counts) == (600, 200, synthetic_adata.X.nnz)
    assert from_memory.n_counts == from_file.n_counts
    assert from_file.peak_memory_gb > 0 and from_file.time_s > 0
    assert "expected peak memory" in str(from_file) and "600 cells" in str(from_file)
    three = scc.tl.estimate_resources(path, method="bgformer", n_seeds=3)
    assert three.time_s == pytest.approx(3 * from_file.time_s)
    assert three.peak_memory_gb == from_file.peak_memory_gb


def test_larger_data_costs_more():
    small = R.estimate_for_shape((10_000, 2000, 2_000_000), "siamese")
    large = R.estimate_for_shape((1_000_000, 2000, 200_000_000), "siamese")
    assert large.peak_memory_gb > 3 * small.peak_memory_gb and large.time_s > small.time_s


def test_unknown_method_is_an_input_error(synthetic_adata):
    with pytest.raises(InputError, match="unknown method"):
        scc.tl.estimate_resources(synthetic_adata, method="louvain")


def test_dry_run_prints_the_estimate_and_writes_nothing(synthetic_adata, tmp_path, capsys):
    path, out = tmp_path / "in.h5ad", tmp_path / "out.h5ad"
    synthetic_adata.write_h5ad(path)
    assert cli.main(["cluster", str(path), "-o", str(out), "--method", "siamese", "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("estimate  siamese: 600 cells x 200 genes") and "expected time" in text
    assert not out.exists()


def test_run_refused_before_reading_when_memory_is_short(synthetic_adata, tmp_path, capsys, monkeypatch):
    path, out = tmp_path / "in.h5ad", tmp_path / "out.h5ad"
    synthetic_adata.write_h5ad(path)
    monkeypatch.setattr(R, "available_memory_gb", lambda: 0.01)
    read_calls = []
    monkeypatch.setattr(scc.io, "read", lambda *a, **k: read_calls.append(a))
    assert cli.main(["cluster", str(path), "-o", str(out), "--method", "kmeans"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1 and err[0].startswith("error: expected peak memory") and "--skip-memory-check" in err[0]
    )
    assert not out.exists() and not read_calls
