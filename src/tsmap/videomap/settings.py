"""What made a store's maps: the one home of "are these the same maps".

``MapSettings`` is what ``store.json`` holds, typed: the stream, the frame ConvNet and its
weights, T, the frame geometry and, for the flow stream, how flow was computed. Two sets
of maps can be mixed (one store), or a head trained on one used on the other, only when
``differences`` between their settings is empty. Where the videos are (``source``) and
where the weights file lies (``weights_file``; its hash is in ``weights``) say where
things are, not what the maps are, so they never count.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

from tsmap.data.video import FrameGeometry, Views

STORE_FORMAT = 1
# Settings that say where something is, not what the maps are.
LOCATION_KEYS = ("source", "weights_file")
# A joined store's settings (steps/join.py) keep each part's under this key, in order.
PARTS_KEY = "parts"
# Optional keys: absent from store.json when None (RGB stores with ImageNet weights keep
# the keys they always had).
_OPTIONAL = (
    "weights",
    "weights_file",
    "flow_method",
    "flow_preset",
    "flow_bound",
    "flow_stack",
    "weights_trained_on",
    "views",
)
# The extra views of a multi-view store: its view 0 is the single-view store's map, so a
# head may be scored on either; only training on them makes another head.
VIEW_KEYS = ("views",)


@dataclass(frozen=True)
class MapSettings:
    frames: int
    feature_dim: int
    backbone: str = "efficientnet_lite0"
    stream: str = "rgb"
    sampling: str = "uniform"
    image_size: int = 224
    resize: int = 256
    crop: str = "center-first"
    dtype: str = "float16"
    weights: str | None = None  # name and hash of weights other than the built-in ImageNet ones
    weights_file: str | None = None  # where that file was (for ``tsmap predict``)
    weights_trained_on: dict | None = None  # a fine-tuned ConvNet's training set (dataset, split, digest)
    flow_method: str | None = None
    flow_preset: str | None = None
    flow_bound: float | None = None
    flow_stack: int | None = None
    views: dict | None = None  # {"crops": N, "flip": bool} when more than one view a video
    format: int = STORE_FORMAT
    source: dict = field(default_factory=dict, compare=False)  # the dataset's spec
    extra: dict = field(default_factory=dict)  # keys this tsmap does not know, kept and compared

    # -- JSON ----------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict) -> MapSettings:
        known = {f.name for f in fields(cls)} - {"extra"}
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["source"] = dict(data.get("source") or {})
        return cls(**kwargs, extra={k: v for k, v in data.items() if k not in known})

    def to_dict(self) -> dict:
        """The store.json form: keys in their historical order, optional ones only when set."""
        data = asdict(self)
        extra = data.pop("extra")
        order = ("format", "stream", "backbone", "feature_dim", "frames", "sampling", "image_size", "resize", "crop")
        out = {k: data.pop(k) for k in order}
        out["dtype"] = data.pop("dtype")
        source = data.pop("source")
        out |= {k: v for k, v in data.items() if not (k in _OPTIONAL and v is None)}
        return out | extra | {"source": source}

    # -- what follows from them --------------------------------------------------------
    @property
    def geometry(self) -> FrameGeometry:
        return FrameGeometry(self.image_size, self.resize)

    @property
    def view_spec(self) -> Views:
        return Views(**self.views) if self.views else Views()

    @property
    def unit(self) -> str:
        """What one row of a map comes from."""
        return "flow stacks" if self.stream == "flow" else "frames"

    def identity(self, ignore: tuple[str, ...] = ()) -> dict:
        """The settings that decide what the maps are (everything but locations and ``ignore``)."""
        data = {k: v for k, v in _without_locations(self.to_dict()).items() if k not in ignore}
        if isinstance(data.get(PARTS_KEY), list):  # a joined store's parts: their locations do not count either
            data[PARTS_KEY] = [_without_locations(part) for part in data[PARTS_KEY]]
        return data

    def differences(self, other: MapSettings, ignore: tuple[str, ...] = ()) -> list[tuple[str, object, object]]:
        """(key, this value, other value) for every setting that makes the two sets of maps different."""
        a, b = self.identity(ignore), other.identity(ignore)
        return [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]

    def with_(self, **changes) -> MapSettings:
        return replace(self, **changes)


def _without_locations(record: object) -> object:
    """A settings record (a store's, or a part's of a joined store) less where its videos and weights file are."""
    return {k: v for k, v in record.items() if k not in LOCATION_KEYS} if isinstance(record, dict) else record
