"""The benchmark scripts: harness end to end on a tiny dataset, aggregation, tables, sections."""

from __future__ import annotations

import csv
import json
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))

import _common  # noqa: E402
import _tables  # noqa: E402
import run as bench_run  # noqa: E402

MEAN_STD = re.compile(r"^\d+\.\d{3} ± \d+\.\d{3}$")


def _runs_frame() -> pd.DataFrame:
    base = {"n_genes": 50, "time_s": 1.0, "peak_rss_mb": 100.0, "note": "", "params": "{}"}
    rows = [
        # method a, k given, dataset d1: two ok seeds
        {
            "method": "a",
            "k_mode": "given",
            "dataset": "d1",
            "seed": 0,
            "ari": 0.5,
            "nmi": 0.6,
            "acc": 0.7,
            "k_found": 3,
            "true_k": 3,
            "n_cells": 100,
            "status": "ok",
        },
        {
            "method": "a",
            "k_mode": "given",
            "dataset": "d1",
            "seed": 1,
            "ari": 0.7,
            "nmi": 0.8,
            "acc": 0.9,
            "k_found": 3,
            "true_k": 3,
            "n_cells": 100,
            "status": "ok",
            "peak_rss_mb": 250.0,
            "time_s": 3.0,
        },
        # dataset d2: one ok, one timeout
        {
            "method": "a",
            "k_mode": "given",
            "dataset": "d2",
            "seed": 0,
            "ari": 0.1,
            "nmi": 0.2,
            "acc": 0.3,
            "k_found": 4,
            "true_k": 4,
            "n_cells": 200,
            "status": "ok",
        },
        {
            "method": "a",
            "k_mode": "given",
            "dataset": "d2",
            "seed": 1,
            "ari": None,
            "nmi": None,
            "acc": None,
            "k_found": None,
            "true_k": 4,
            "n_cells": 200,
            "status": "timeout",
            "note": "ran too long",
        },
        # method a, k auto: k found varies
        {
            "method": "a",
            "k_mode": "auto",
            "dataset": "d1",
            "seed": 0,
            "ari": 0.4,
            "nmi": 0.5,
            "acc": 0.5,
            "k_found": 2,
            "true_k": 3,
            "n_cells": 100,
            "status": "ok",
        },
        {
            "method": "a",
            "k_mode": "auto",
            "dataset": "d1",
            "seed": 1,
            "ari": 0.6,
            "nmi": 0.5,
            "acc": 0.5,
            "k_found": 5,
            "true_k": 3,
            "n_cells": 100,
            "status": "ok",
        },
        # method b, k auto: not applicable
        {
            "method": "b",
            "k_mode": "auto",
            "dataset": "d1",
            "seed": 0,
            "status": "na",
            "true_k": 3,
            "n_cells": 100,
            "note": "k auto not applicable: needs n_clusters",
        },
    ]
    return pd.DataFrame([{**base, **r} for r in rows], columns=bench_run.CSV_COLUMNS)


def test_aggregate_hand_made_frame():
    agg = _tables.aggregate(_runs_frame()).set_index(["method", "k_mode", "dataset"])
    d1 = agg.loc[("a", "given", "d1")]
    assert d1["ari_mean"] == pytest.approx(0.6)
    assert d1["ari_std"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert d1["nmi_mean"] == pytest.approx(0.7) and d1["acc_mean"] == pytest.approx(0.8)
    assert (d1["n_ok"], d1["n_runs"], d1["status"]) == (2, 2, "ok")
    assert d1["time_mean"] == pytest.approx(2.0) and d1["rss_max"] == pytest.approx(250.0)
    d2 = agg.loc[("a", "given", "d2")]
    assert (d2["n_ok"], d2["n_runs"]) == (1, 2)
    assert d2["ari_mean"] == pytest.approx(0.1) and np.isnan(d2["ari_std"])
    assert d2["status"] == "timeout x1" and d2["note"] == "ran too long"
    auto = agg.loc[("a", "auto", "d1")]
    assert (auto["k_min"], auto["k_max"], auto["k_mean"]) == (2, 5, 3.5)
    assert agg.loc[("b", "auto", "d1")]["status"] == "na"

    means = _tables.dataset_means(_tables.aggregate(_runs_frame())).set_index(["method", "k_mode"])
    assert means.loc[("a", "given"), "ari"] == pytest.approx((0.6 + 0.1) / 2)
    assert ("b", "auto") not in means.index


def test_markdown_table_format():
    table = _tables.markdown_table(_tables.aggregate(_runs_frame()))
    lines = table.splitlines()
    row_d1 = next(ln for ln in lines if "| a | given | d1 |" in ln)
    cells = [c.strip() for c in row_d1.strip("|").split("|")]
    assert cells[4] == "0.600 ± 0.141" and all(MEAN_STD.match(c) for c in cells[4:7])
    assert cells[7] == "3 / 3" and cells[10] == "2/2"
    auto_row = next(ln for ln in lines if "| a | auto | d1 |" in ln)
    assert "3.5 (2–5) / 3" in auto_row
    mean_given = next(ln for ln in lines if ln.startswith("| a | given | **mean over datasets**"))
    assert "**0.350**" in mean_given
    assert any("b, k auto: not applicable" in ln for ln in lines)
    assert any("d2: timeout x1: ran too long" in ln for ln in lines)
    row_d2 = next(ln for ln in lines if "| a | given | d2 |" in ln)
    assert "| 0.100 | 0.200 | 0.300 |" in row_d2 and "1/2" in row_d2  # one run: no ± spread
    assert not any(ln.startswith("| b |") for ln in lines)


def test_replace_section_keeps_other_sections(tmp_path):
    md = tmp_path / "BENCHMARKS.md"
    _common.replace_section(md, "one", "first body", intro="# Title\n\nHand-written intro.\n")
    _common.replace_section(md, "two", "second body")
    _common.replace_section(md, "one", "new first body")
    text = md.read_text()
    assert text.startswith("# Title\n\nHand-written intro.")
    assert "<!-- BEGIN one -->\nnew first body\n<!-- END one -->" in text
    assert "first body\n<!-- END one" not in text.replace("new first body", "")
    assert "<!-- BEGIN two -->\nsecond body\n<!-- END two -->" in text
    assert text.index("BEGIN one") < text.index("BEGIN two")


def _scale_results() -> pd.DataFrame:
    rows = []
    for size, t_m, t_s, t_n in [
        (10_000, 10.0, 20.0, 15.0),
        (100_000, 95.0, 250.0, 160.0),
        (1_000_000, 1000.0, None, 1700.0),
    ]:
        rows.append(
            {
                "size": size,
                "pipeline": "sccluster bgformer",
                "time_s": t_m,
                "peak_rss_mb": 500.0,
                "ari": 0.7,
                "k_found": 8,
                "status": "ok",
                "last_step": "write",
            }
        )
        rows.append(
            {
                "size": size,
                "pipeline": "scanpy",
                "time_s": t_s,
                "peak_rss_mb": 9000.0,
                "ari": 0.6 if t_s else None,
                "k_found": 12 if t_s else None,
                "status": "ok" if t_s else "killed (signal 9)",
                "last_step": "write" if t_s else "highly_variable_genes",
            }
        )
        rows.append(
            {
                "size": size,
                "pipeline": "scanpy (no scale)",
                "time_s": t_n,
                "peak_rss_mb": 3000.0,
                "ari": 0.55,
                "k_found": 14,
                "status": "ok",
                "last_step": "write",
            }
        )
    return pd.DataFrame(rows)


def test_scale_ratios_and_table():
    res = _scale_results()
    ratios = _tables.scale_ratios(res, "sccluster bgformer", "scanpy")
    vs = ratios[ratios["kind"] == "t(sccluster bgformer)/t(scanpy)"].set_index("size")["ratio"]
    assert vs.to_dict() == pytest.approx({10_000: 0.5, 100_000: 0.38})  # no ratio where scanpy was killed
    growth = ratios[ratios["kind"] == "t(1M)/t(100k)"].set_index("pipeline")["ratio"]
    assert growth["sccluster bgformer"] == pytest.approx(1000 / 95)
    assert growth["scanpy (no scale)"] == pytest.approx(1700 / 160)
    assert "scanpy" not in growth.index
    table = _tables.scale_table(res, ratios)
    assert (
        "| 1,000,000 | scanpy | 0 | – | 9,000 | – | – | killed (signal 9), after `highly_variable_genes` |"
        in table
    )
    assert "| t(1M)/t(100k) | sccluster bgformer | 1,000,000 | 10.53 |" in table
    assert "| 10,000 | sccluster bgformer | 0 | 10.0 | 500 | 0.700 | 8 | ok |" in table
    assert "| ARI(1M) − ARI(10k) | scanpy (no scale) | +0.000 |" in table


def test_scale_table_aggregates_seeds():
    res = _scale_results()
    res["seed"] = 0
    extra = res[res["pipeline"] == "sccluster bgformer"].copy()
    extra["seed"] = 1
    extra["time_s"] = extra["time_s"] * 3  # mean over the two seeds = 2x the seed-0 time
    extra["ari"] = 0.5
    extra["k_found"] = 6
    res = pd.concat([res, extra], ignore_index=True)
    ratios = _tables.scale_ratios(res, ["sccluster bgformer"], ["scanpy", "scanpy (no scale)"])
    vs = ratios[ratios["kind"] == "t(sccluster bgformer)/t(scanpy (no scale))"].set_index("size")["ratio"]
    assert vs[1_000_000] == pytest.approx(2000 / 1700)
    table = _tables.scale_table(res, ratios)
    row = next(ln for ln in table.splitlines() if ln.startswith("| 10,000 | sccluster bgformer |"))
    assert (
        row == "| 10,000 | sccluster bgformer | 0, 1 | 20.0 ± 14.1 | 500 | 0.600 ± 0.141 | 7.0 (6–8) | ok |"
    )
    changes = _tables.scale_ari_changes(res).set_index(["pipeline", "size"])["delta"]
    assert changes[("sccluster bgformer", 1_000_000)] == pytest.approx(0.0)
    assert ("scanpy", 1_000_000) not in changes.index  # scanpy never finished at 1M


def test_run_child_reports_timeout_kill_and_last_step(tmp_path):
    py = sys.executable
    slow = _common.run_child(
        [py, "-c", "import time; time.sleep(30)"], workdir=tmp_path, tag="slow", timeout_s=0.5
    )
    assert slow.status == "timeout" and slow.wall_s < 10
    code = (
        "import os; print('@@step read 1.0', flush=True); print('@@step log1p 2.0', flush=True); "
        "os.kill(os.getpid(), 9)"
    )
    killed = _common.run_child([py, "-c", code], workdir=tmp_path, tag="killed")
    assert killed.status == "killed (signal 9)" and killed.steps == ["read", "log1p"]
    assert killed.result is None


def test_harness_end_to_end(tmp_path):
    from sccluster.datasets import synthetic

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    synthetic(n_cells=150, n_genes=60, n_clusters=3, n_markers=10, random_state=1).write_h5ad(
        data_dir / "tiny.h5ad"
    )
    md = tmp_path / "BENCHMARKS.md"
    md.write_text("# Benchmarks\n\nIntro.\n\n<!-- BEGIN other -->\nkeep me\n<!-- END other -->\n")
    csv_path = tmp_path / "out.csv"
    argv = [
        "--methods",
        "kmeans",
        "no_such_method",
        "--seeds",
        "0",
        "1",
        "--k",
        "given",
        "--data-dir",
        str(data_dir),
        "--csv",
        str(csv_path),
        "--markdown",
        str(md),
        "--section",
        "tiny",
        "--timeout-s",
        "300",
        "--no-warmup",
    ]
    assert bench_run.main(argv) == 0

    with open(csv_path) as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4 and set(rows[0]) == set(bench_run.CSV_COLUMNS)
    ok = [r for r in rows if r["method"] == "kmeans"]
    assert [r["seed"] for r in ok] == ["0", "1"] and all(r["status"] == "ok" for r in ok)
    for r in ok:
        assert (r["dataset"], r["k_mode"], r["n_cells"], r["n_genes"], r["true_k"]) == (
            "tiny",
            "given",
            "150",
            "60",
            "3",
        )
        assert 0.5 < float(r["ari"]) <= 1.0 and 0 <= float(r["nmi"]) <= 1 and int(r["k_found"]) == 3
        assert float(r["time_s"]) > 0 and float(r["peak_rss_mb"]) > 10
    partitions = [_common.decode_partition(r["partition"]) for r in ok]  # the run's labels_, in cell order
    assert all(len(p) == 150 and set(p) == {0, 1, 2} for p in partitions)
    assert all(r["partition"] == "" for r in rows if r["method"] == "no_such_method")
    bad = [r for r in rows if r["method"] == "no_such_method"]
    assert all(r["status"] == "error" and "no_such_method" in r["note"] for r in bad)

    text = md.read_text()
    assert (
        text.startswith("# Benchmarks\n\nIntro.")
        and "<!-- BEGIN other -->\nkeep me\n<!-- END other -->" in text
    )
    section = text[text.index("<!-- BEGIN tiny -->") : text.index("<!-- END tiny -->")]
    assert "- Command: `python " in section and "- Machine: " in section
    row = next(ln for ln in section.splitlines() if ln.startswith("| kmeans | given | tiny |"))
    assert sum(bool(MEAN_STD.match(c.strip())) for c in row.split("|")) == 3
    assert "**mean over datasets**" in section and "no_such_method, k given, tiny: error x2" in section

    # the table can be rebuilt from the CSV alone, into another section, without running anything
    assert bench_run.main([*argv[:-1], "--from-csv", str(csv_path), "--section", "again"]) == 0
    text = md.read_text()
    again = text[text.index("<!-- BEGIN again -->") : text.index("<!-- END again -->")]
    assert row in again and "<!-- BEGIN tiny -->" in text and "keep me" in text

    # the seed-to-seed agreement is computed from the partitions in the CSV, without a refit
    import stability

    out = tmp_path / "stab.md"
    out.write_text("# Benchmarks\n")
    stab_argv = ["--method", "kmeans", "--datasets", "tiny", "--from-csv", str(csv_path)]
    assert stability.main([*stab_argv, "--markdown", str(out)]) == 0
    from sccluster.metrics import ari

    pair = ari(*partitions)
    assert f"| tiny | {pair:.3f} ({pair:.3f}–{pair:.3f}) |" in out.read_text()
    with pytest.raises(SystemExit, match="no finished k-given run of 'leiden'"):
        stability.main(["--method", "leiden", *stab_argv[2:], "--no-markdown"])
    # only the seeds named: one seed has no pair
    assert stability.main([*stab_argv, "--seeds", "0", "--markdown", str(out)]) == 0
    assert "| tiny | – |" in out.read_text()
    # a CSV holding the same run twice is refused (a seed would agree with its own copy)
    twice = tmp_path / "twice.csv"
    lines = csv_path.read_text().splitlines(keepends=True)
    twice.write_text("".join(lines) + "".join(lines[1:]))
    with pytest.raises(SystemExit, match="repeat a run"):
        stability.main([*stab_argv[:-1], str(twice), "--no-markdown"])
    # --k auto takes the k-auto runs only: none here, then the same runs relabelled as k auto
    with pytest.raises(SystemExit, match="no finished k-auto run of 'kmeans'"):
        stability.main([*stab_argv, "--k", "auto", "--no-markdown"])
    auto = tmp_path / "auto.csv"
    auto.write_text(csv_path.read_text().replace(",tiny,given,", ",tiny,auto,"))
    assert stability.main([*stab_argv[:-1], str(auto), "--k", "auto", "--markdown", str(out)]) == 0
    assert f"| tiny | {pair:.3f} ({pair:.3f}–{pair:.3f}) |" in out.read_text()


def test_resume_keeps_only_finished_rows_of_the_planned_grid(tmp_path):
    specs = bench_run.plan_runs(["kmeans"], [tmp_path / "tiny.h5ad"], [0, 1], ["given"], {"kmeans": {}})
    assert [s["seed"] for s in specs] == [0, 1]
    csv_path = tmp_path / "old.csv"
    with open(csv_path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=bench_run.CSV_COLUMNS)
        writer.writeheader()
        base = {"method": "kmeans", "dataset": "tiny", "k_mode": "given", "params": "{}", "warmup_s": 1.5}
        writer.writerow({**base, "seed": 0, "status": "ok", "ari": 0.9})
        writer.writerow({**base, "seed": 1, "status": "timeout"})  # to be run again
        writer.writerow({**base, "seed": 5, "status": "ok"})  # not in the plan
    kept = bench_run.done_rows(csv_path, specs)
    assert [(r["seed"], r["ari"]) for r in kept] == [("0", "0.9")]
    # a row timed without the warm-up fit is not the run a warm-up spec asks for, and the other way round
    cold = bench_run.plan_runs(
        ["kmeans"], [tmp_path / "tiny.h5ad"], [0], ["given"], {"kmeans": {}}, warmup=False
    )
    assert bench_run.done_rows(csv_path, cold) == []


def test_resume_leaves_the_rows_of_other_runs_in_the_csv(tmp_path, monkeypatch):
    """--resume with another method or parameters adds its runs; the CSV's earlier rows stay."""
    csv_path = tmp_path / "grid.csv"
    base = {"dataset": "tiny", "k_mode": "auto", "seed": 0, "warmup_s": 1.0, "status": "ok", "ari": 0.7}
    with open(csv_path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=bench_run.CSV_COLUMNS)
        writer.writeheader()
        writer.writerow({**base, "method": "kmeans", "params": "{}"})
    specs = bench_run.plan_runs(
        ["leiden"], [tmp_path / "tiny.h5ad"], [0], ["auto"], {"leiden": {"resolution": 1.0}}
    )
    monkeypatch.setattr(bench_run, "execute", lambda spec, **kw: {**base, "method": spec["method"],
                                                                  "params": '{"resolution": 1.0}'})  # fmt: skip
    rows = bench_run.run_grid(specs, csv_path, tmp_path, None, resume=True)
    assert [r["method"] for r in rows] == ["leiden"]  # the table shows the runs asked for
    assert sorted(pd.read_csv(csv_path)["method"]) == ["kmeans", "leiden"]  # the file keeps both


def test_from_csv_refuses_repeated_runs_and_names_every_commit(tmp_path):
    import _common

    row = {
        "method": "kmeans",
        "dataset": "d",
        "k_mode": "given",
        "seed": 0,
        "params": "{}",
        "status": "ok",
        "ari": 0.5,
        "nmi": 0.5,
        "acc": 0.5,
        "git_commit": "aaaaaaa",
    }
    frame = pd.DataFrame([row, {**row, "ari": 0.9, "git_commit": "bbbbbbb"}])
    with pytest.raises(SystemExit, match="repeat a run"):
        bench_run.check_unique(frame)
    bench_run.check_unique(frame.assign(params=["{}", '{"n_init": 3}']))  # other parameters: another run
    line = _common.commits_line(frame.to_dict("records"))
    assert "more than one commit" in line and "`aaaaaaa` (1 run)" in line and "`bbbbbbb` (1 run)" in line
    picked = bench_run.select_rows(
        frame.assign(seed=[0, 4]).to_dict("records"), ["kmeans"], ["given"], [0, 1, 2]
    )
    assert [r["git_commit"] for r in picked] == ["aaaaaaa"]
    assert _common.params_label('{"n_init": 3, "a": true}') == "a=true, n_init=3"


def test_ablation_table_and_full_model_rows_are_reused(tmp_path):
    import ablation

    rows = []
    for params, base in (("{}", 0.6), ('{"use_sinkhorn": false}', 0.5)):
        for d, shift in (("d1", 0.0), ("d2", 0.2)):
            for seed in range(3):
                rows.append(
                    {
                        "method": "siamese",
                        "dataset": d,
                        "k_mode": "given",
                        "seed": seed,
                        "warmup_s": 2.0,
                        "params": params,
                        "status": "ok",
                        "ari": base + shift + 0.01 * seed,
                        "note": "",
                    }
                )
    table = ablation.ablation_table(pd.DataFrame(rows), "siamese", ["d1", "d2"])
    assert "| full model | – | 0.610 ± 0.010 | 0.810 ± 0.010 | 0.710 |  | 6/6 |" in table
    assert (
        "| - Sinkhorn | DEC target instead of the OT target | 0.510 ± 0.010 | 0.710 ± 0.010 | 0.610 | -0.100 | 6/6 |"
        in table
    )
    assert "| - adaptive fusion | plain mean of the two embeddings | – | – | – |  | 0/0 |" in table
    # a failed run is counted and listed, never silently left out
    rows[-1].update(status="timeout", ari=None, note="ran 3600 s")
    table = ablation.ablation_table(pd.DataFrame(rows), "siamese", ["d1", "d2"])
    assert "| 0.705 ± 0.007 (2 of 3 ok) | 0.607 | -0.103 | 5/6 |" in table
    assert "- - Sinkhorn, d2, seed 2: timeout ran 3600 s" in table
    # only the full model's rows (no parameters) of an earlier run.py CSV are reused
    path = tmp_path / "main.csv"
    pd.DataFrame([{**r, "params": "{}"} for r in rows[:3]] + [{**rows[0], "params": '{"x": 1}'}]).to_csv(
        path, index=False
    )
    specs = bench_run.plan_runs(["siamese"], [Path("d1.h5ad")], [0, 1, 2], ["given"], {"siamese": {}})
    specs += bench_run.plan_runs(
        ["siamese"], [Path("d1.h5ad")], [0], ["given"], {"siamese": {"use_sinkhorn": False}}
    )
    reused = ablation.reuse_rows(path, specs)
    assert sorted(int(r["seed"]) for r in reused) == [0, 1, 2] and all(r["params"] == "{}" for r in reused)


def test_scale_harness_seeds_resume_and_render(tmp_path):
    """scale.py end to end on a tiny source: one row per seed; --resume runs only the new seed."""
    import scale as bench_scale

    from sccluster.datasets import synthetic

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    synthetic(n_cells=120, n_genes=60, n_clusters=3, n_markers=10, random_state=2).write_h5ad(
        data_dir / "tiny.h5ad"
    )
    md = tmp_path / "BENCHMARKS.md"
    csv_path = tmp_path / "scale.csv"
    common = [
        "--methods", "kmeans", "--sizes", "240", "--source", "tiny", "--k", "given", "--baseline", "none",
        "--data-dir", str(data_dir), "--workdir", str(tmp_path / "work"),
        "--csv", str(csv_path), "--markdown", str(md), "--section", "tiny-scale", "--no-warmup", "--timeout-s", "300",
    ]  # fmt: skip
    assert bench_scale.main([*common, "--seeds", "0", "1"]) == 0
    first = pd.read_csv(csv_path)
    assert list(zip(first["pipeline"], first["seed"], strict=True)) == [
        ("sccluster kmeans", 0),
        ("sccluster kmeans", 1),
    ]
    assert (
        (first["status"] == "ok").all()
        and (first["n_cells"] == 240).all()
        and (first["data_seed"] == 0).all()
    )
    assert (first["ari"] > 0.5).all()

    assert bench_scale.main([*common, "--seeds", "0", "1", "2", "--resume"]) == 0
    second = pd.read_csv(csv_path)
    assert list(second["seed"]) == [0, 1, 2]
    kept = second.merge(first, on=["pipeline", "seed"], suffixes=("", "_old"))
    assert len(kept) == 2 and (kept["time_s"] == kept["time_s_old"]).all()  # earlier runs were not redone

    # resuming with a smaller plan runs nothing and keeps the other rows in the CSV
    assert bench_scale.main([*common, "--seeds", "1", "--resume", "--no-markdown"]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(csv_path).sort_values("seed", ignore_index=True), second)

    section = md.read_text()
    row = next(ln for ln in section.splitlines() if ln.startswith("| 240 | sccluster kmeans |"))
    assert "| 0, 1, 2 |" in row and sum(bool(MEAN_STD.match(c.strip())) for c in row.split("|")) == 1
    md.write_text("")
    assert bench_scale.main([*common, "--from-csv", str(csv_path)]) == 0
    assert row in md.read_text()


def test_scale_plan_runs_baselines_only_for_their_seeds():
    import scale as bench_scale

    plan = bench_scale.plan_runs([10, 20], ["sccluster a"], [0, 1], ["scanpy", "scanpy (no scale)"], [0])
    assert plan == [
        (10, 0, "sccluster a"), (10, 0, "scanpy"), (10, 0, "scanpy (no scale)"), (10, 1, "sccluster a"),
        (20, 0, "sccluster a"), (20, 0, "scanpy"), (20, 0, "scanpy (no scale)"), (20, 1, "sccluster a"),
    ]  # fmt: skip


def test_children_see_only_the_counts():
    import anndata as ad
    import scipy.sparse as sp

    X = sp.random(5, 4, density=0.5, format="csr", random_state=0)
    obs = pd.DataFrame(
        {"cell_type": list("aabbc"), "label_int": [0, 0, 1, 1, 2]}, index=[f"c{i}" for i in range(5)]
    )
    src = ad.AnnData(X, obs=obs, uns={"published_results": {"ari": 0.8}}, obsm={"X_pca": np.zeros((5, 2))})
    labels, data = _common.counts_only(src, "cell_type")
    assert list(labels) == list("aabbc")
    assert list(data.obs.columns) == [] and dict(data.uns) == {} and list(data.obsm) == []
    assert list(data.obs_names) == list(src.obs_names) and data.X is src.X  # nothing copied
    assert "label_int" in src.obs  # the source is left as it was


def test_scale_resume_reuses_a_row_only_for_the_same_setting():
    import argparse

    import scale as bench_scale

    args = argparse.Namespace(k_mode="given", params={"siamese": {}}, data_seed=0)
    row = {"method": "siamese", "k_mode": "given", "params": "{}", "data_seed": 0.0}
    assert bench_scale._same_setting(row, args, "siamese")
    assert not bench_scale._same_setting({**row, "k_mode": "auto"}, args, "siamese")
    assert not bench_scale._same_setting({**row, "params": '{"cluster_steps": 10}'}, args, "siamese")
    assert not bench_scale._same_setting({**row, "data_seed": 7}, args, "siamese")
    assert not bench_scale._same_setting({**row, "k_mode": float("nan")}, args, "siamese")  # older CSVs
    scanpy_row = {"method": float("nan"), "k_mode": float("nan"), "params": "{}", "data_seed": 0}
    assert bench_scale._same_setting(scanpy_row, args, None)


def test_reference_recipe_recovers_planted_clusters_and_renders(synthetic_adata, tmp_path, monkeypatch):
    """The scDeepCluster reference: planted clusters found from the counts alone; table from its CSV."""
    import reference_scdeepcluster as ref

    from sccluster.metrics import ari

    monkeypatch.setitem(ref.RECIPE, "pretrain_epochs", 100)
    truth, counts = _common.counts_only(synthetic_adata, "cell_type")
    out = ref.fit_recipe(counts, 4, seed=0)
    assert ari(truth, out["labels"]) >= 0.9 and ari(truth, out["init_labels"]) >= 0.9
    assert out["n_genes"] == synthetic_adata.n_vars and out["epochs"] >= 1
    # from a poor start (short pretraining) the clustering stage trains for many epochs and improves it
    monkeypatch.setitem(ref.RECIPE, "pretrain_epochs", 20)
    short = ref.fit_recipe(counts, 4, seed=0)
    assert short["epochs"] > 10 and np.abs(short["centers"] - short["init_centers"]).max() > 0.1
    assert ari(truth, short["labels"]) > ari(truth, short["init_labels"]) + 0.1
    monkeypatch.setitem(ref.RECIPE, "pretrain_epochs", 100)
    again = ref.fit_recipe(counts, 4, seed=0, select_genes=50)
    assert again["n_genes"] == 50 and ari(truth, again["labels"]) >= 0.9
    path = tmp_path / "planted.h5ad"
    synthetic_adata.write_h5ad(path)
    row = ref.run_one(path, 0, select_genes=50, select_above=500)  # 200 genes: not above 500, all kept
    assert row["n_genes"] == 200 and row["k"] == 4 and row["ari"] >= 0.9 and set(row) == set(ref.COLUMNS)
    rows = [
        {
            "dataset": d,
            "seed": s,
            "n_cells": 600,
            "n_genes": 200,
            "k": 4,
            "ari": a + 0.1 * s,
            "nmi": 0.5,
            "acc": 0.5,
            "init_ari": 0.4,
            "init_nmi": 0.4,
            "init_acc": 0.4,
            "cluster_epochs": 10 + s,
            "time_s": 5.0,
            "git_commit": "abc1234",
        }
        for d, a in (("d1", 0.5), ("d2", 0.7))
        for s in range(3)
    ]
    pd.DataFrame(rows, columns=ref.COLUMNS).to_csv(tmp_path / "ref.csv", index=False)
    md = tmp_path / "B.md"
    md.write_text("# B\n")
    assert ref.main(["--from-csv", str(tmp_path / "ref.csv"), "--markdown", str(md)]) == 0
    text = md.read_text()
    assert "| d1 | 600 | 200 | 4 | 0.600 ± 0.100 |" in text and "| 11 (10–12) |" in text
    assert "**0.700**" in text and "every row at commit `abc1234` (6 runs)" in text


def test_partitions_are_stored_compactly_and_read_back_in_either_format():
    labels = np.random.default_rng(0).integers(0, 40, size=5000)
    text = _common.encode_partition(labels)
    assert text.startswith("z1:") and len(text) < len(json.dumps(labels.tolist())) / 2
    assert _common.decode_partition(text) == labels.tolist()
    assert _common.decode_partition(json.dumps([2, 0, 1])) == [2, 0, 1]  # rows written before the change
    assert _common.decode_partition(_common.encode_partition([])) == []
    with pytest.raises(ValueError, match="0..65535"):
        _common.encode_partition([-1, 0])


def test_peer_methods_are_found_after_the_package_registry():
    import peers

    from sccluster.models import LeidenBaseline

    assert peers.method_class("leiden") is LeidenBaseline
    with pytest.raises(Exception, match="no_such_method"):
        peers.method_class("no_such_method")
    pytest.importorskip("scvi")  # the peer's own environment (benchmarks/peers.py)
    cls = peers.method_class("scvi")
    assert issubclass(cls, LeidenBaseline) and cls().resolution == 1.0


def test_peer_latent_cache_is_found_only_by_the_same_training(monkeypatch, tmp_path):
    """The scvi peer's run with the other k mode finds the latent of the same data and seed, nothing else does."""
    import anndata as ad
    import peers
    import scipy.sparse as sp

    counts = sp.random(30, 8, density=0.4, format="csr", dtype=np.float32, random_state=0)
    data = ad.AnnData(X=counts, var=pd.DataFrame(index=[f"g{i}" for i in range(8)]))
    monkeypatch.delenv("SCCLUSTER_PEER_CACHE", raising=False)
    assert peers._latent_cache(data, 0, 10, None, "1.4.2") is None  # off unless asked for
    monkeypatch.setenv("SCCLUSTER_PEER_CACHE", str(tmp_path / "cache"))
    path = peers._latent_cache(data, 0, 10, None, "1.4.2")
    assert path.parent.is_dir() and path == peers._latent_cache(data.copy(), 0, 10, None, "1.4.2")
    changed = data.copy()
    changed.X = counts * 2
    batched = data.copy()
    batched.obs["batch"] = ["a", "b"] * 15
    others = [peers._latent_cache(data, 1, 10, None, "1.4.2"), peers._latent_cache(data, 0, 5, None, "1.4.2"),
              peers._latent_cache(changed, 0, 10, None, "1.4.2"), peers._latent_cache(batched, 0, 10, None, "1.4.2")]  # fmt: skip
    assert len({path, *others}) == 5


def test_resumable_csv_keeps_rows_on_resume_and_starts_anew_without(tmp_path):
    path = tmp_path / "rows.csv"
    cols, keys = ["name", "seed", "value"], ["name", "seed"]
    with _common.resumable_csv(path, cols, keys, resume=True) as (write, done):
        assert done == set()
        write({"name": "a", "seed": 0, "value": 1.5})
    with _common.resumable_csv(path, cols, keys, resume=True) as (write, done):
        assert done == {("a", "0")}
        write({"name": "b", "seed": 1, "value": 2.5})
    assert [r["name"] for r in csv.DictReader(path.read_text().splitlines())] == ["a", "b"]
    with _common.resumable_csv(path, cols, keys, resume=False) as (write, done):
        assert done == set()
    assert path.read_text().splitlines() == ["name,seed,value"]


def test_held_out_cells_depend_on_the_seed_alone():
    import heldout

    a, b = heldout.held_out_cells(5000, 0), heldout.held_out_cells(5000, 0)
    np.testing.assert_array_equal(a, b)
    assert len(a) == 500 and np.all(np.diff(a) > 0)
    assert not np.array_equal(a, heldout.held_out_cells(5000, 1))
    assert len(heldout.held_out_cells(300, 0)) == 100  # at least 100 cells, at most half
