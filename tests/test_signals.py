"""SIGINT and SIGTERM at any moment: one ``error: interrupted`` line, exit 130 / 143, nothing left behind.

Real signals sent to ``python -m sccluster`` subprocesses, timed by what the process shows: the modules
it has loaded (/proc/PID/maps) for the imports, its progress lines for the training. The write is made
to signal its own process half-way (a script that patches the writer), at each step of the write.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="POSIX signals, timed through /proc")


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    from sccluster.datasets import synthetic

    path = tmp_path_factory.mktemp("signals") / "in.h5ad"
    synthetic(n_cells=60, n_genes=50, n_clusters=3, n_markers=5, random_state=0).write_h5ad(path)
    return path


def _start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ))  # fmt: skip


class _Lines:
    """Collects a pipe's text in a thread, so that the test can wait for a marker."""

    def __init__(self, pipe) -> None:
        self.text = ""
        self._thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self._thread.start()

    def _read(self, pipe) -> None:
        for chunk in iter(lambda: pipe.read(1), ""):
            self.text += chunk

    def wait_for(self, marker: str, proc: subprocess.Popen, timeout: float = 240) -> None:
        end = time.monotonic() + timeout
        while marker not in self.text:
            assert proc.poll() is None, f"ended before {marker!r}: {self.text}"
            assert time.monotonic() < end, f"no {marker!r} in {self.text!r}"
            time.sleep(0.02)

    def join(self) -> str:
        self._thread.join(timeout=30)
        return self.text


def _loaded(pid: int, library: str) -> bool:
    try:
        return library in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def _assert_one_error_line(stderr: str, expected: str) -> None:
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr
    errors = [line for line in stderr.replace("\r", "\n").splitlines() if line.startswith("error:")]
    assert errors == [expected], stderr
    assert stderr.rstrip("\n").endswith(expected), stderr


def test_sigint_during_imports(small, tmp_path):
    out = tmp_path / "out.h5ad"
    proc = _start("-m", "sccluster", "-q", "cluster", str(small), "-o", str(out), "--method", "kmeans")
    end = time.monotonic() + 120
    while not _loaded(proc.pid, "_multiarray_umath"):  # numpy loads first, torch and the rest take seconds
        assert proc.poll() is None and time.monotonic() < end, proc.communicate()
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    _assert_one_error_line(stderr, "error: interrupted (SIGINT); no output was written")
    assert stdout == ""
    assert not out.exists()


def test_sigterm_during_training(small, tmp_path):
    out, csv = tmp_path / "out.h5ad", tmp_path / "labels.csv"
    proc = _start("-m", "sccluster", "cluster", str(small), "-o", str(out), "--labels-csv", str(csv),
                  "--method", "bgformer", "--n-clusters", "3", "--param", "pretrain_steps=1000000",
                  "--param", "d_model=16", "--param", "n_anchors=4", "--param", "batch_size=32")  # fmt: skip
    lines = _Lines(proc.stderr)
    lines.wait_for("bgformer", proc)  # the model's first progress line: training has started
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    stderr = lines.join()
    proc.stdout.close()
    proc.stderr.close()
    assert proc.returncode == 143, stderr
    _assert_one_error_line(stderr, "error: interrupted (SIGTERM); no output was written")
    assert not out.exists() and not csv.exists()
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".part"]


# Runs whose writer sends its own process a signal at one moment of the write (a real signal, delivered by the
# kernel), or swallows the KeyboardInterrupt as h5py does in some callbacks; one subprocess runs every case.
_SCRIPT = """
import io, json, os, signal, sys, types
import anndata
import sccluster._utils as utils
from sccluster import cli

source, cases = sys.argv[1], json.loads(sys.argv[2])
original_write, original_replace = anndata.AnnData.write_h5ad, os.replace
state = {}

def kill():
    os.kill(os.getpid(), state["sig"])
    for _ in range(1000):  # the handler runs at the next bytecode
        pass

def write(self, filename, *args, **kwargs):
    with open(filename, "wb") as fh:
        fh.write(b"half")
    if state["moment"] == "during_write":
        kill()
    if state["moment"] == "swallowed":
        try:
            kill()
        except KeyboardInterrupt:
            pass
    original_write(self, filename, *args, **kwargs)

def replace(src, dst):
    original_replace(src, dst)
    if state["moment"] == "after_rename" and str(dst) == state["out"]:
        kill()

anndata.AnnData.write_h5ad = write
proxy = types.ModuleType("os")  # atomic_path's os, with a replace that signals right after renaming
proxy.__dict__.update(os.__dict__)
proxy.replace = replace
utils.os = proxy
results = []
for moment, signame, out, csv in cases:
    state.update(moment=moment, sig=getattr(signal, signame), out=out)
    argv = ["-q", "cluster", source, "-o", out, "--method", "kmeans"] + (["--labels-csv", csv] if csv else [])
    sys.stderr, saved = io.StringIO(), sys.stderr
    try:
        code = cli.main(argv)
    finally:
        text, sys.stderr = sys.stderr.getvalue(), saved
    results.append({"code": code, "stderr": text, "left": sorted(os.listdir(os.path.dirname(out)))})
print(json.dumps(results))
"""

_WRITE_CASES = {  # name -> (moment, signal, with a CSV, exit code, the one line)
    "sigterm_during_write": ("during_write", "SIGTERM", False, 143,
                             "error: interrupted (SIGTERM); no output was written"),
    "swallowed_sigint": ("swallowed", "SIGINT", False, 130, "error: interrupted (SIGINT); no output was written"),
    "sigterm_after_rename": ("after_rename", "SIGTERM", False, 0,
                             "warning: interrupted (SIGTERM) after the output was complete: {out}"),
    "sigint_between_outputs": ("after_rename", "SIGINT", True, 130,
                               "error: interrupted (SIGINT); removed {out} so that no partial result remains"),
}  # fmt: skip


@pytest.fixture(scope="module")
def write_runs(small, tmp_path_factory):
    import json

    cases, outs = [], {}
    for name, (moment, signame, with_csv, _, _) in _WRITE_CASES.items():
        folder = tmp_path_factory.mktemp(name)
        outs[name] = folder / "out.h5ad"
        cases.append([moment, signame, str(outs[name]), str(folder / "labels.csv") if with_csv else ""])
    result = subprocess.run([sys.executable, "-c", _SCRIPT, str(small), json.dumps(cases)], capture_output=True,
                            text=True, timeout=300, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return dict(zip(_WRITE_CASES, json.loads(result.stdout.strip().splitlines()[-1]), strict=True)), outs


@pytest.mark.parametrize("name", list(_WRITE_CASES))
def test_signal_during_the_write(write_runs, name):
    runs, outs = write_runs
    run, out = runs[name], outs[name]
    *_, code, expected = _WRITE_CASES[name]
    assert run["code"] == code, run
    assert "Traceback" not in run["stderr"]
    assert [line for line in run["stderr"].splitlines() if line.strip()] == [expected.format(out=out)]
    if code == 0:
        import anndata as ad

        assert run["left"] == ["out.h5ad"]  # complete, and no temporary file beside it
        assert "sccluster" in ad.read_h5ad(out).obs
    else:
        assert run["left"] == []  # no output, no CSV, no temporary file
