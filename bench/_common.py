"""What every benchmark shares: the line naming the machine it ran on and its result file.

A figure means little without the host behind it, so each result file starts with the same
machine line; results are written whole or not at all, so an interrupted run leaves the
previous file in place. Heavy imports stay inside the functions: `bench/loader.py` measures
the memory of child processes that import this module.
"""

from __future__ import annotations

import argparse
import os
import platform
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

RESULTS = Path(__file__).parent / "results"


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gib() -> float | None:
    try:
        return int(Path("/proc/meminfo").read_text().split()[1]) / 1024**2
    except (OSError, IndexError, ValueError):
        return None


def describe_machine(device: str = "cpu") -> str:
    """One line: CPU, cores, RAM, GPU, software versions, torch threads, device, load now."""
    import torch
    import zarr

    gpu = torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else "none"
    ram = _ram_gib()
    memory = f", {ram:.0f} GiB RAM" if ram is not None else ""
    return (
        f"machine: {cpu_model()}, {os.cpu_count()} CPUs{memory}; GPU {gpu}; "
        f"Python {platform.python_version()}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), zarr {zarr.__version__}; device {device}; "
        f"1-min load average {os.getloadavg()[0]:.1f}"
    )


def synchronize(device: str | torch.device) -> None:
    """Wait for queued CUDA work, so a timer stopped after it measures the work itself."""
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize(torch.device(device))


def add_results_argument(parser: argparse.ArgumentParser) -> None:
    """`--results DIR`: where the result file goes (a smoke run keeps bench/results as is)."""
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder for the result file")


def write_result(folder: Path, name: str, text: str) -> Path:
    """Print `text` and save it as `folder/name`, whole (temporary name, then replace)."""
    text = text if text.endswith("\n") else text + "\n"
    print(text, end="")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    temporary = path.with_name(f".{name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)
    return path
