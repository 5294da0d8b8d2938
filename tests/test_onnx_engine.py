"""The ONNX Runtime engine: same features as PyTorch, exported once, cached, checked."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from tsmap.frames import onnx_runtime  # noqa: E402
from tsmap.frames.encoder import FrameEncoder, resolve_engine  # noqa: E402

SIZE = 64  # small frames keep each export to a few seconds


def _frames(n: int, seed: int = 0) -> np.ndarray:
    """Real-ish frames: the astronaut photo (if scikit-image is there) plus random ones."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (n, SIZE, SIZE, 3), dtype=np.uint8)
    try:
        from skimage.data import astronaut
    except ImportError:
        return frames
    photo = astronaut()  # 512 x 512 x 3 uint8
    step = photo.shape[0] // SIZE
    frames[0] = photo[::step, ::step][:SIZE, :SIZE]
    return frames


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A cache dir holding the 64-px model, exported once for the module."""
    root = tmp_path_factory.mktemp("tsmap-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TSMAP_CACHE", str(root))
        encoder = FrameEncoder(engine="onnx", image_size=SIZE, batch_size=4)
    runner = encoder._runners[(SIZE, SIZE)]
    assert runner.exported and runner.path.parent == root / "onnx"
    return root, encoder


def _model_files(directory):
    return sorted(p.name for p in directory.iterdir())


def test_onnx_features_equal_torch_features_for_two_batch_sizes(cache):
    _, encoder = cache
    frames = _frames(5)
    # batch_size 4: five frames run as a batch of 4 and a batch of 1 through one session.
    onnx_feats = encoder.encode(frames)
    torch_feats = encoder._encode_torch(frames)
    assert onnx_feats.shape == (5, 1280) and onnx_feats.dtype == np.float32
    scale = np.abs(torch_feats).max()
    np.testing.assert_allclose(onnx_feats, torch_feats, rtol=0, atol=1e-3 * scale)
    # Frames are encoded independently: a lone frame gives the same row.
    np.testing.assert_allclose(encoder.encode(frames[2:3])[0], onnx_feats[2], rtol=0, atol=1e-5 * scale)
    check = encoder._runners[(SIZE, SIZE)].check
    assert check["max_abs_diff"] <= check["tolerance"]


def test_exported_graph_has_its_pads_folded_into_the_convs(cache):
    import onnx

    _, encoder = cache
    graph = onnx.load(str(encoder._runners[(SIZE, SIZE)].path)).graph
    ops = [node.op_type for node in graph.node]
    # Explicit Pad nodes would cost ORT NCHWc reorders around each (~1.3x slower).
    assert "Pad" not in ops and ops.count("Conv") == 49
    assert [d.dim_param for d in graph.input[0].type.tensor_type.shape.dim][0] == "batch"


def test_cached_model_is_reused_without_exporting(cache, monkeypatch):
    root, first = cache
    monkeypatch.setenv("TSMAP_CACHE", str(root))
    path = first._runners[(SIZE, SIZE)].path
    mtime = path.stat().st_mtime_ns
    files = _model_files(path.parent)

    def no_export(*args, **kwargs):
        raise AssertionError("the cached model was exported again")

    monkeypatch.setattr(onnx_runtime, "export_features", no_export)
    second = FrameEncoder(engine="onnx", image_size=SIZE)
    runner = second._runners[(SIZE, SIZE)]
    assert runner.path == path and not runner.exported
    assert path.stat().st_mtime_ns == mtime and _model_files(path.parent) == files
    frames = _frames(3, seed=1)
    np.testing.assert_array_equal(second.encode(frames), first.encode(frames))


def test_corrupt_cache_file_is_exported_again(cache, tmp_path, monkeypatch, capsys):
    root, first = cache
    shutil.copytree(root / "onnx", tmp_path / "onnx")
    monkeypatch.setenv("TSMAP_CACHE", str(tmp_path))
    path = tmp_path / "onnx" / first._runners[(SIZE, SIZE)].path.name
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # a half-written file, as a killed writer would leave
    encoder = FrameEncoder(engine="onnx", image_size=SIZE)
    runner = encoder._runners[(SIZE, SIZE)]
    assert runner.exported
    assert "re-exporting" in capsys.readouterr().err
    assert onnx_runtime.read_cached(path)[0] is not None, "the new file matches its sidecar"
    assert not list(path.parent.glob("*.tmp")), "no temporaries left behind"
    frames = _frames(2)
    np.testing.assert_allclose(encoder.encode(frames), first.encode(frames), rtol=0, atol=1e-5)


def test_export_that_differs_from_torch_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("TSMAP_CACHE", str(tmp_path))
    real_export = onnx_runtime.export_features

    def buggy_export(model, scale, shift, *args, **kwargs):  # a normalisation bug
        return real_export(model, scale, shift + 0.25, *args, **kwargs)

    monkeypatch.setattr(onnx_runtime, "export_features", buggy_export)
    with pytest.raises(onnx_runtime.OnnxMismatchError, match="differ from PyTorch"):
        FrameEncoder(engine="onnx", image_size=SIZE)
    assert not (tmp_path / "onnx").exists() or not list((tmp_path / "onnx").iterdir()), "nothing cached"


def test_auto_falls_back_to_torch_with_a_note(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TSMAP_CACHE", str(tmp_path))

    def refused(*args, **kwargs):
        raise onnx_runtime.OnnxMismatchError("ONNX Runtime features differ from PyTorch's")

    monkeypatch.setattr(onnx_runtime, "export_features", refused)
    encoder = FrameEncoder(engine="auto", image_size=SIZE)
    assert encoder.engine == "torch" and "differ" in encoder.engine_note
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tsmap: note:")
    assert encoder.encode(_frames(2)).shape == (2, 1280)


def test_engine_choice(tmp_path, monkeypatch):
    monkeypatch.setenv("TSMAP_CACHE", str(tmp_path))
    assert FrameEncoder(engine="auto").engine == "onnx"  # CPU, onnxruntime installed
    assert resolve_engine("auto", torch.device("cpu")) == "onnx"
    assert resolve_engine("auto", torch.device("cuda")) == "torch"
    assert resolve_engine("torch", torch.device("cpu")) == "torch"
    with pytest.raises(ValueError, match="CPU only"):
        resolve_engine("onnx", torch.device("cuda"))
    with pytest.raises(ValueError, match="unknown engine"):
        resolve_engine("tensorrt", torch.device("cpu"))
    monkeypatch.setattr(onnx_runtime, "missing_packages", lambda: ["onnxruntime"])
    assert resolve_engine("auto", torch.device("cpu")) == "torch"
    with pytest.raises(onnx_runtime.OnnxEngineError, match="tsmap\\[fast\\]"):
        resolve_engine("onnx", torch.device("cpu"))


def test_cache_location_and_file_name(tmp_path, monkeypatch):
    monkeypatch.setenv("TSMAP_CACHE", str(tmp_path))
    assert onnx_runtime.default_cache_dir() == tmp_path / "onnx"
    monkeypatch.delenv("TSMAP_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert onnx_runtime.default_cache_dir() == tmp_path / "xdg" / "tsmap" / "onnx"
    name = onnx_runtime.model_filename("efficientnet_lite0", 224, 224, "uint8", "0123abcd")
    assert name.startswith("efficientnet_lite0-224x224-uint8-w0123abcd-torch") and name.endswith(".onnx")
    assert torch.__version__ in name
