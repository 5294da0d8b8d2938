"""The Python API used the way the README shows it."""

from __future__ import annotations

import subprocess
import sys

import tsmap


def test_extract_train_evaluate_load_predict(tiny_demo, tmp_path):
    store = tsmap.extract(tiny_demo, tmp_path / "maps", frames=8, image_size=64, resize=64)
    assert isinstance(store, tsmap.VideoMapStore) and store.num_frames == 8
    histories = tsmap.train(store, tmp_path / "run", epochs=2, batch_size=8)
    assert set(histories) == {"videomap", "tsn"} and len(histories["videomap"]) == 2
    results = tsmap.evaluate(tmp_path / "maps", tmp_path / "run")
    assert 0 <= results["heads"]["videomap"]["top1"] <= 1
    run = tsmap.load(tmp_path / "run")
    video = next(tiny_demo.glob("grow/*.mp4"))
    top = run.predict(video, top=3)
    assert len(top) == 3 and top[0][1] >= top[1][1] >= top[2][1]
    assert all(name in run.classes for name, _ in top)
    grown = tsmap.extract(tiny_demo, tmp_path / "maps", frames=8, image_size=64, resize=64, views=2)
    assert grown.views == 2 and all(grown.complete(key) for key in grown.keys())


def test_importing_tsmap_does_not_load_torch():
    """`tsmap --help` must answer at once: the API is imported on first use."""
    code = "import sys, tsmap; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
