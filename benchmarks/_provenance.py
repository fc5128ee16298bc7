"""Provenance of a benchmark section: command, date, commit and the machine it ran on."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import shlex
import subprocess
from pathlib import Path

from _common import REPO_ROOT


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gb() -> float | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 1024**2
    except (OSError, ValueError):
        pass
    return None


def _version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _gpu() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "Apple MPS"
    except Exception:  # noqa: BLE001 - a broken torch must not stop the report
        return "unknown"
    return "none"


def machine_info() -> dict[str, str]:
    """CPU model, cores, RAM, OS, Python / torch / scanpy / anndata versions and the GPU (or none)."""
    cores = os.cpu_count() or 0
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    ram = _ram_gb()
    return {
        "cpu": _cpu_model(),
        "cores": f"{usable}" if usable == cores else f"{usable} usable of {cores}",
        "ram": f"{ram:.1f} GB" if ram is not None else "unknown",
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch": _version("torch"),
        "scanpy": _version("scanpy"),
        "anndata": _version("anndata"),
        "sccluster": sccluster_version(),
        "gpu": _gpu(),
        "load": " / ".join(f"{x:.1f}" for x in os.getloadavg()) + " (1 / 5 / 15 min)"
        if hasattr(os, "getloadavg")
        else "unknown",
    }


def sccluster_version() -> str:
    """Version of the sccluster that is installed (read without importing it)."""
    try:
        ns: dict[str, str] = {}
        exec((REPO_ROOT / "src" / "sccluster" / "_version.py").read_text(), ns)
        return ns["__version__"]
    except (OSError, KeyError):
        return _version("sccluster")


def default_data_dir() -> Path:
    """``sccluster.settings.datasetdir`` (or ``../shared/data`` beside the repository)."""
    try:
        from sccluster import settings

        return Path(settings.datasetdir)
    except Exception:  # noqa: BLE001 - fall back to the documented location
        return REPO_ROOT.parent / "shared" / "data"


def git_commit() -> str:
    """Short commit of the working tree, with ``-dirty`` when it has uncommitted changes."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("-dirty" if dirty else "")


def provenance_lines(argv: list[str]) -> list[str]:
    """Markdown lines giving the command, date, commit and machine of a section."""
    m = machine_info()
    cmd = "python " + shlex.join([os.path.relpath(argv[0], REPO_ROOT), *argv[1:]])
    return [
        f"- Command: `{cmd}`",
        f"- Date: {_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}; "
        f"sccluster {m['sccluster']} at commit `{git_commit()}`",
        f"- Machine: {m['cpu']}, {m['cores']} cores, {m['ram']} RAM, GPU: {m['gpu']}; {m['os']}; "
        f"load average {m['load']} when the section was written",
        f"- Software: Python {m['python']}, torch {m['torch']}, scanpy {m['scanpy']}, anndata {m['anndata']}",
    ]
