"""Thread budgets on shared cores: what other processes keep busy, and ORT sessions that never spin."""

from __future__ import annotations

import pytest

from tsmap.frames import onnx_runtime


@pytest.fixture
def no_cache(monkeypatch):
    monkeypatch.setattr(onnx_runtime, "_busy_sample", None)
    return onnx_runtime


def _fake_stat(monkeypatch, ticks: list[tuple[int, int]], own_cpu: list[float], cores: int = 2, load: float = 9.0):
    """/proc/stat gives ``ticks`` (busy, all) in turn, this process uses ``own_cpu`` seconds in turn."""
    ticks, own_cpu = list(ticks), list(own_cpu)
    monkeypatch.setattr(onnx_runtime, "_cpu_ticks", lambda: ticks.pop(0))
    monkeypatch.setattr(onnx_runtime.time, "process_time", lambda: own_cpu.pop(0))
    monkeypatch.setattr(onnx_runtime.time, "sleep", lambda s: None)
    monkeypatch.setattr(onnx_runtime.os, "sysconf", lambda name: 100)
    monkeypatch.setattr(onnx_runtime, "usable_cores", lambda: cores)
    monkeypatch.setattr(onnx_runtime.os, "getloadavg", lambda: (load, load, load))


def test_busy_cores_of_others_takes_away_this_process(no_cache, monkeypatch):
    # 2 cores, 200 ticks in all over the second, 150 busy: 1.5 cores busy, 0.5 of them ours.
    _fake_stat(monkeypatch, [(1000, 5000), (1150, 5200)], [10.0, 10.5])
    assert no_cache.busy_cores_of_others() == pytest.approx(1.0)
    assert no_cache.free_cores() == 1  # the sample is reused (nothing more to pop)


def test_a_blip_the_load_average_does_not_confirm_is_not_counted(no_cache, monkeypatch):
    # Both cores busy with others during the sample, but a 1-minute load of 0.3.
    _fake_stat(monkeypatch, [(1000, 5000), (1200, 5200)], [3.0, 3.0], load=0.3)
    assert no_cache.busy_cores_of_others() == pytest.approx(0.3)
    assert no_cache.free_cores() == 2


def test_idle_machine_leaves_every_core(no_cache, monkeypatch):
    _fake_stat(monkeypatch, [(1000, 5000), (1004, 5200)], [3.0, 3.04])
    assert no_cache.free_cores() == 2


def test_at_least_one_core_and_none_without_proc_stat(no_cache, monkeypatch):
    _fake_stat(monkeypatch, [(0, 5000), (200, 5200)], [1.0, 1.0])
    assert no_cache.free_cores() == 1  # every core busy with others: still one thread
    monkeypatch.setattr(onnx_runtime, "_busy_sample", None)
    monkeypatch.setattr(onnx_runtime, "_cpu_ticks", lambda: None)
    monkeypatch.setattr(onnx_runtime.time, "process_time", lambda: 0.0)
    assert no_cache.busy_cores_of_others() == 0.0


def test_real_sample_is_in_range(no_cache):
    busy = no_cache.busy_cores_of_others(sample_s=0.02)
    assert 0.0 <= busy <= no_cache.usable_cores()
    assert 1 <= no_cache.free_cores() <= no_cache.usable_cores()


def _identity_model() -> bytes:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def test_sessions_do_not_spin_and_take_the_free_cores(monkeypatch):
    pytest.importorskip("onnxruntime")
    monkeypatch.setattr(onnx_runtime, "free_cores", lambda: 1)
    monkeypatch.delenv("TSMAP_ORT_SPINNING", raising=False)
    options = onnx_runtime.make_session(_identity_model()).get_session_options()
    assert options.intra_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.get_session_config_entry("session.inter_op.allow_spinning") == "0"
    assert onnx_runtime.make_session(_identity_model(), threads=3).get_session_options().intra_op_num_threads == 3


def test_spinning_comes_back_on_request(monkeypatch):
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("TSMAP_ORT_SPINNING", "1")
    options = onnx_runtime.make_session(_identity_model(), threads=1).get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "1"


@pytest.mark.parametrize(("free", "asked", "used"), [(1, 2, 1), (2, 2, 2), (8, 2, 2), (1, 0, 1)])
def test_decode_threads_fit_the_free_cores(monkeypatch, free, asked, used):
    from types import SimpleNamespace

    from tsmap.data.video import FrameGeometry, Views
    from tsmap.videomap import extract

    seen = []

    class Pool(extract.ThreadPoolExecutor):
        def __init__(self, max_workers):
            seen.append(max_workers)
            super().__init__(max_workers=max_workers)

    monkeypatch.setattr(extract, "free_cores", lambda: free)
    monkeypatch.setattr(extract, "ThreadPoolExecutor", Pool)
    store = SimpleNamespace(complete=lambda key: True, num_frames=4, map_settings=SimpleNamespace(view_spec=Views()))
    extract.extract_clips([], None, store, None, FrameGeometry(32, 36), show_progress=False, decode_workers=asked)
    assert seen == [used]
