"""What every benchmark records about the machine it ran on (figures are only comparable within one)."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results"


def machine_record() -> dict:
    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        # A loaded machine slows PyTorch more than ONNX Runtime: keep the load with the figures.
        "load_average": list(os.getloadavg()),
    }


def saved_runs(name: str) -> dict:
    """The ``runs`` already in ``benchmarks/results/<name>.json`` (entry per tag), to add one to."""
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()).get("runs", {}) if path.is_file() else {}


def save_results(name: str, record: dict) -> Path:
    """Write ``record``, with the machine first, to ``benchmarks/results/<name>.json``."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine_record(), **record}, indent=1))
    return path
