"""What every benchmark records about the machine it ran on (figures are only comparable within one)."""

from __future__ import annotations

import os
import platform

import torch


def machine_record() -> dict:
    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        # A loaded machine slows PyTorch more than ONNX Runtime: keep the load with the figures.
        "load_average": list(os.getloadavg()),
    }
