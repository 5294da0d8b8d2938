"""tsmap: video action recognition with Temporal-Spatial Mapping (VideoMaps)."""

__version__ = "0.1.0"
