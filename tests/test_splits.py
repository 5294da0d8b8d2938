"""Official HMDB51 / UCF101 split files: the real lists, small fixtures in their formats, and errors."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest

from tsmap.data.datasets import Clip, DatasetError, VideoDataset
from tsmap.data.splits import hmdb51_dataset, ucf101_dataset

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "splits"
HMDB_FIX = FIXTURES / "hmdb51"
UCF_FIX = FIXTURES / "ucf101"
NO_ROOT = "/nonexistent/videos"

# Measured with these parsers on the official lists, and equal to the non-empty line counts
# of trainlist0N.txt / testlist0N.txt (checked below too).
UCF_COUNTS = {1: (9537, 3783), 2: (9586, 3734), 3: (9624, 3696)}


def _real_splits() -> Path:
    here = Path(__file__).resolve()
    for candidate in (
        here.parents[2] / "shared" / "data" / "splits",
        here.parents[1] / ".." / "shared" / "data" / "splits",
    ):
        if (candidate / "hmdb51_splits").is_dir() and (candidate / "ucf101_splits").is_dir():
            return candidate.resolve()
    pytest.skip("official split files (shared/data/splits) are not on this machine")


@pytest.fixture(scope="module")
def real_splits() -> Path:
    return _real_splits()


def _nonblank_lines(path: Path) -> int:
    return sum(1 for line in path.read_bytes().splitlines() if line.strip())


def _assert_disjoint(ds: VideoDataset) -> None:
    train = {c.key for c in ds.splits["train"]}
    test = {c.key for c in ds.splits["test"]}
    assert len(train) == len(ds.splits["train"]) and len(test) == len(ds.splits["test"]), "no clip twice"
    assert not train & test


# --- the real official files -------------------------------------------------------------------


@pytest.mark.parametrize("split", [1, 2, 3])
def test_real_hmdb51(real_splits, split):
    folder = real_splits / "hmdb51_splits"
    ds = hmdb51_dataset(NO_ROOT, folder, split)
    assert len(ds.classes) == 51 and ds.classes == sorted(ds.classes)
    # class_list.txt carries trailing spaces on some names: the classes are the stripped names.
    assert ds.classes == sorted(line.strip() for line in (folder / "class_list.txt").read_text().splitlines())
    assert (len(ds.splits["train"]), len(ds.splits["test"])) == (3570, 1530)
    assert Counter(c.label for c in ds.splits["train"]) == {i: 70 for i in range(51)}
    assert Counter(c.label for c in ds.splits["test"]) == {i: 30 for i in range(51)}
    _assert_disjoint(ds)
    for clip in ds.clips():
        cls, name = clip.key.split("/")
        assert ds.classes[clip.label] == cls and name.endswith(".avi") and name == name.strip()
    assert ds.spec == {"kind": "hmdb51", "root": NO_ROOT, "splits_dir": str(folder.resolve()), "split": split}


def test_real_hmdb51_splits_share_the_clips(real_splits):
    # Every split file lists all 6,766 clips; 1,666 of them are marked unused (0) in each split.
    folder = real_splits / "hmdb51_splits"
    for split in (1, 2, 3):
        assert sum(_nonblank_lines(p) for p in folder.glob(f"*_test_split{split}.txt")) == 6766
    tests = [{c.key for c in hmdb51_dataset(NO_ROOT, folder, s).splits["test"]} for s in (1, 2, 3)]
    assert tests[0] != tests[1] and tests[1] != tests[2] and tests[0] != tests[2]


@pytest.mark.parametrize("split", [1, 2, 3])
def test_real_ucf101(real_splits, split):
    folder = real_splits / "ucf101_splits"
    ds = ucf101_dataset(NO_ROOT, folder, split)
    assert len(ds.classes) == 101
    assert ds.classes[0] == "ApplyEyeMakeup" and ds.classes[36] == "HandstandPushups" and ds.classes[-1] == "YoYo"
    n_train, n_test = len(ds.splits["train"]), len(ds.splits["test"])
    assert (n_train, n_test) == UCF_COUNTS[split]
    assert n_train == _nonblank_lines(folder / f"trainlist0{split}.txt")
    assert n_test == _nonblank_lines(folder / f"testlist0{split}.txt")
    assert n_train + n_test == 13320
    _assert_disjoint(ds)
    assert set(Counter(c.label for c in ds.clips()).keys()) == set(range(101))
    for clip in ds.clips():
        assert clip.key.split("/")[0] == ds.classes[clip.label]
    # No video root here, so the listed (mis-cased) names are kept.
    assert any(c.key.startswith("HandstandPushups/v_HandStandPushups_") for c in ds.splits["train"])
    assert ds.spec == {"kind": "ucf101", "root": NO_ROOT, "splits_dir": str(folder.resolve()), "split": split}


def test_real_ucf101_every_clip_once_per_split(real_splits):
    keys = [{c.key for c in ucf101_dataset(NO_ROOT, real_splits / "ucf101_splits", s).clips()} for s in (1, 2, 3)]
    assert keys[0] == keys[1] == keys[2] and len(keys[0]) == 13320


# --- fixtures in the official formats ----------------------------------------------------------


def test_fixtures_keep_their_bytes():
    # The parsers must cope with these; a checkout that normalised them would test nothing.
    assert b"1 \n" in (HMDB_FIX / "brush_hair_test_split1.txt").read_bytes()
    for name in ("classInd.txt", "trainlist01.txt", "testlist01.txt"):
        data = (UCF_FIX / name).read_bytes()
        assert data.count(b"\r\n") == data.count(b"\n") > 0
    assert b"\r\n\r\n" in (UCF_FIX / "trainlist01.txt").read_bytes(), "a blank line"


def test_hmdb51_fixture():
    ds = hmdb51_dataset(NO_ROOT, HMDB_FIX, 1)
    assert ds.classes == ["brush_hair", "cartwheel", "kick_ball"]
    assert ds.root == Path(NO_ROOT)
    assert ds.spec == {"kind": "hmdb51", "root": NO_ROOT, "splits_dir": str(HMDB_FIX), "split": 1}
    assert Counter(c.label for c in ds.splits["train"]) == {0: 3, 1: 2, 2: 1}
    assert Counter(c.label for c in ds.splits["test"]) == {0: 1, 1: 2, 2: 1}
    assert ds.splits["test"] == [
        Clip("brush_hair/Blonde_being_brushed_brush_hair_f_nm_np2_ri_med_0.avi", 0),
        Clip("cartwheel/Boden_bung_spinni_Bernd_cartwheel_f_cm_np1_ri_med_1.avi", 1),
        Clip("cartwheel/Bodenturnen_2004_cartwheel_f_cm_np1_le_med_0.avi", 1),
        Clip("kick_ball/Best_fo_Soccer_kick_ball_f_cm_np1_le_goo_2.avi", 2),
    ]
    train = {c.key for c in ds.splits["train"]}
    assert "brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0.avi" in train
    # id 0: in neither split.
    assert "brush_hair/Brushing_Hair_with_Beth_brush_hair_h_nm_np1_le_goo_0.avi" not in {c.key for c in ds.clips()}
    assert "kick_ball/Amazing_Soccer_Skills_kick_ball_f_cm_np1_fr_med_1.avi" not in {c.key for c in ds.clips()}
    _assert_disjoint(ds)


def test_hmdb51_fixture_other_split():
    ds = hmdb51_dataset(NO_ROOT, HMDB_FIX, 2)
    assert (len(ds.splits["train"]), len(ds.splits["test"])) == (6, 4)
    assert Clip("brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0.avi", 0) in ds.splits["test"]
    assert ds.spec["split"] == 2


def test_ucf101_fixture_without_videos():
    ds = ucf101_dataset(NO_ROOT, UCF_FIX, 1)
    assert ds.classes == ["ApplyEyeMakeup", "HandstandPushups", "YoYo"]
    assert ds.spec == {"kind": "ucf101", "root": NO_ROOT, "splits_dir": str(UCF_FIX), "split": 1}
    assert ds.splits["train"] == [
        Clip("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi", 0),
        Clip("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c02.avi", 0),
        Clip("HandstandPushups/v_HandStandPushups_g08_c01.avi", 1),
        Clip("HandstandPushups/v_HandStandPushups_g09_c01.avi", 1),
        Clip("YoYo/v_YoYo_g08_c01.avi", 2),
    ]
    assert ds.splits["test"] == [
        Clip("ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi", 0),
        Clip("HandstandPushups/v_HandStandPushups_g01_c01.avi", 1),
        Clip("YoYo/v_YoYo_g01_c01.avi", 2),
    ]
    assert all("\r" not in c.key for c in ds.clips())


def test_ucf101_resolves_case_mismatch_on_disk(tmp_path):
    root = tmp_path / "UCF-101"
    (root / "HandstandPushups").mkdir(parents=True)
    (root / "YoYo").mkdir()
    (root / "HandstandPushups" / "v_HandstandPushups_g08_c01.avi").write_bytes(b"")
    (root / "HandstandPushups" / "v_HandstandPushups_g01_c01.avi").write_bytes(b"")
    (root / "YoYo" / "v_YoYo_g08_c01.avi").write_bytes(b"")
    ds = ucf101_dataset(root, UCF_FIX, 1)
    keys = {c.key for c in ds.clips()}
    assert "HandstandPushups/v_HandstandPushups_g08_c01.avi" in keys
    assert "HandstandPushups/v_HandstandPushups_g01_c01.avi" in keys
    assert "HandstandPushups/v_HandStandPushups_g08_c01.avi" not in keys
    # Not on disk in any case: kept as listed (extraction reports it missing later).
    assert "HandstandPushups/v_HandStandPushups_g09_c01.avi" in keys
    assert "YoYo/v_YoYo_g08_c01.avi" in keys and "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi" in keys
    assert ds.spec["root"] == str(root.resolve()) and ds.root == root.resolve()
    assert len(ds.splits["train"]) == 5 and len(ds.splits["test"]) == 3


# --- errors ------------------------------------------------------------------------------------


def _copy(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / src.name
    shutil.copytree(src, dst)
    return dst


def _replace_line(path: Path, lineno: int, new: bytes) -> None:
    lines = path.read_bytes().split(b"\n")
    eol = b"\r" if lines[lineno - 1].endswith(b"\r") else b""
    lines[lineno - 1] = new + eol
    path.write_bytes(b"\n".join(lines))


@pytest.mark.parametrize(
    ("file", "lineno", "line", "reason"),
    [
        ("cartwheel_test_split1.txt", 3, b"Boden_bung_spinni_Bernd_cartwheel_f_cm_np1_ri_med_1.avi ", "fields"),
        ("cartwheel_test_split1.txt", 2, b"Bodenturnen_2004_cartwheel_f_cm_np1_le_med_0.avi 1 x", "fields"),
        ("kick_ball_test_split1.txt", 2, b"Amazing_Soccer_Skills_kick_ball_f_cm_np1_fr_med_1.avi 3 ", "split id"),
        ("kick_ball_test_split1.txt", 1, b"other/Amazing_Soccer_Skills_kick_ball_f_cm_np1_ba_med_0.avi 1 ", "folders"),
    ],
)
def test_hmdb51_malformed_line(tmp_path, file, lineno, line, reason):
    folder = _copy(HMDB_FIX, tmp_path)
    _replace_line(folder / file, lineno, line)
    with pytest.raises(DatasetError, match=reason) as err:
        hmdb51_dataset(NO_ROOT, folder, 1)
    assert f"{file}:{lineno}:" in str(err.value)


@pytest.mark.parametrize(
    ("file", "lineno", "line", "reason"),
    [
        ("trainlist01.txt", 2, b"ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c02.avi", "fields"),
        ("trainlist01.txt", 3, b"HandstandPushups/v_HandStandPushups_g08_c01.avi two", "not an integer"),
        ("trainlist01.txt", 6, b"YoYo/v_YoYo_g08_c01.avi 2", "does not match class 'YoYo'"),
        ("trainlist01.txt", 1, b"Archery/v_Archery_g08_c01.avi 1", "class 'Archery' is not in"),
        ("trainlist01.txt", 1, b"v_ApplyEyeMakeup_g08_c01.avi 1", "is not <class>/<video>"),
        ("testlist01.txt", 3, b"YoYo/v_YoYo_g01_c01.avi 3", "fields"),
        ("testlist01.txt", 2, b"Handstandpushups/v_HandStandPushups_g01_c01.avi", "not in"),
        ("classInd.txt", 2, b"3 HandstandPushups", "class index"),
        ("classInd.txt", 3, b"3 YoYo extra", "fields"),
    ],
)
def test_ucf101_malformed_line(tmp_path, file, lineno, line, reason):
    folder = _copy(UCF_FIX, tmp_path)
    _replace_line(folder / file, lineno, line)
    with pytest.raises(DatasetError, match=reason) as err:
        ucf101_dataset(NO_ROOT, folder, 1)
    assert f"{file}:{lineno}:" in str(err.value)


def test_hmdb51_missing_split_file(tmp_path):
    folder = _copy(HMDB_FIX, tmp_path)
    (folder / "kick_ball_test_split2.txt").unlink()
    assert len(hmdb51_dataset(NO_ROOT, folder, 1).classes) == 3
    with pytest.raises(DatasetError, match="kick_ball_test_split2.txt"):
        hmdb51_dataset(NO_ROOT, folder, 2)
    with pytest.raises(DatasetError, match="no HMDB51 split files"):
        hmdb51_dataset(NO_ROOT, UCF_FIX, 1)


def test_hmdb51_class_list_catches_a_class_without_files(tmp_path):
    folder = _copy(HMDB_FIX, tmp_path)
    for s in (1, 2):
        (folder / f"cartwheel_test_split{s}.txt").unlink()
    with pytest.raises(DatasetError, match="cartwheel"):
        hmdb51_dataset(NO_ROOT, folder, 1)
    (folder / "class_list.txt").unlink()
    assert hmdb51_dataset(NO_ROOT, folder, 1).classes == ["brush_hair", "kick_ball"]


def test_ucf101_missing_files(tmp_path):
    with pytest.raises(DatasetError, match="trainlist02.txt"):
        ucf101_dataset(NO_ROOT, UCF_FIX, 2)
    folder = _copy(UCF_FIX, tmp_path)
    (folder / "testlist01.txt").unlink()
    with pytest.raises(DatasetError, match="testlist01.txt"):
        ucf101_dataset(NO_ROOT, folder, 1)
    (folder / "classInd.txt").unlink()
    with pytest.raises(DatasetError, match="classInd.txt"):
        ucf101_dataset(NO_ROOT, folder, 1)


@pytest.mark.parametrize("reader", [hmdb51_dataset, ucf101_dataset])
def test_missing_splits_dir(tmp_path, reader):
    missing = tmp_path / "no_such_dir"
    with pytest.raises(DatasetError, match="no_such_dir"):
        reader(NO_ROOT, missing, 1)


@pytest.mark.parametrize("reader", [hmdb51_dataset, ucf101_dataset])
@pytest.mark.parametrize("split", [0, 4, True, "1"])
def test_bad_split_number(reader, split):
    fixture = HMDB_FIX if reader is hmdb51_dataset else UCF_FIX
    with pytest.raises(DatasetError, match="split must be one of 1, 2, 3"):
        reader(NO_ROOT, fixture, split)


def test_hmdb51_duplicate_clip(tmp_path):
    folder = _copy(HMDB_FIX, tmp_path)
    path = folder / "cartwheel_test_split1.txt"
    # Listed again further down, as unused: still a conflict in the list.
    path.write_bytes(path.read_bytes() + b"Bodenturnen_2004_cartwheel_f_cm_np1_le_med_0.avi 0 \n")
    with pytest.raises(DatasetError, match="already listed") as err:
        hmdb51_dataset(NO_ROOT, folder, 1)
    assert "cartwheel_test_split1.txt:5:" in str(err.value) and "cartwheel_test_split1.txt:2" in str(err.value)


def test_ucf101_duplicate_clip_across_train_and_test(tmp_path):
    folder = _copy(UCF_FIX, tmp_path)
    _replace_line(folder / "testlist01.txt", 3, b"YoYo/v_YoYo_g08_c01.avi")
    with pytest.raises(DatasetError, match="already listed") as err:
        ucf101_dataset(NO_ROOT, folder, 1)
    assert "testlist01.txt:3:" in str(err.value) and "trainlist01.txt:6" in str(err.value)


def test_ucf101_duplicate_after_case_resolution(tmp_path):
    # Two spellings of one video on disk are one clip.
    folder = _copy(UCF_FIX, tmp_path)
    _replace_line(folder / "testlist01.txt", 2, b"HandstandPushups/v_HandstandPushups_g08_c01.avi")
    root = tmp_path / "videos"
    (root / "HandstandPushups").mkdir(parents=True)
    (root / "HandstandPushups" / "v_HandstandPushups_g08_c01.avi").write_bytes(b"")
    assert len(ucf101_dataset(NO_ROOT, folder, 1).splits["test"]) == 3
    with pytest.raises(DatasetError, match="already listed") as err:
        ucf101_dataset(root, folder, 1)
    assert "testlist01.txt:2:" in str(err.value) and "trainlist01.txt:3" in str(err.value)


def test_the_split_readers_do_not_import_the_dataset_module():
    """No import cycle: splits and datasets share tsmap.data.clips; only datasets imports splits."""
    import subprocess
    import sys

    code = "import sys, tsmap.data.splits; print('tsmap.data.datasets' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_split_files_with_a_byte_order_mark_are_read(tmp_path):
    folder = tmp_path / "splits"
    shutil.copytree(UCF_FIX, folder)
    index = folder / "classInd.txt"
    index.write_bytes(b"\xef\xbb\xbf" + index.read_bytes())
    assert ucf101_dataset(NO_ROOT, folder, 1).classes == ucf101_dataset(NO_ROOT, UCF_FIX, 1).classes
