"""tsmap: video action recognition with Temporal-Spatial Mapping (VideoMaps).

The Python API (see ``tsmap.api``): ``extract``, ``train``, ``evaluate``, ``load`` (a
``Run`` whose ``predict(video)`` gives the top classes), and the building blocks
``VideoMapStore``, ``VideoMapHead``, ``create_head``, ``TrainConfig``. They are imported
on first use, so ``tsmap --help`` answers without loading PyTorch.
"""

__version__ = "0.1.0"

_API = {
    "extract": "tsmap.api",
    "train": "tsmap.api",
    "evaluate": "tsmap.api",
    "load": "tsmap.api",
    "Run": "tsmap.steps.predict",
    "VideoMapStore": "tsmap.videomap.store",
    "MapSettings": "tsmap.videomap.settings",
    "VideoMapHead": "tsmap.heads.videomap_head",
    "create_head": "tsmap.heads",
    "TrainConfig": "tsmap.training",
}
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'tsmap' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_API[name]), name)
