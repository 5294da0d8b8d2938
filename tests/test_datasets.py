"""Dataset kinds `folder` and `list`: classes, clips, spec round trips, errors and reported problems.

The 'videos' are empty files: datasets only list videos, they never decode them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tsmap.data.datasets import (
    Clip,
    DatasetError,
    VideoDataset,
    dataset_from_spec,
    folder_dataset,
    list_dataset,
    open_dataset,
)


def touch(root: Path, *keys: str) -> None:
    for key in keys:
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()


def write(path: Path, *lines: str) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def keys(clips: list[Clip]) -> list[str]:
    return [c.key for c in clips]


@pytest.fixture
def videos(tmp_path: Path) -> Path:
    root = tmp_path / "videos"
    touch(root, "a/one.mp4", "a/two.mp4", "b/three.avi", "b/four four.avi", "c d/five.mkv", "six.mp4")
    return root


# --- list: integer labels -------------------------------------------------------------------


def test_integer_labels_name_classes_by_index(videos, tmp_path):
    train = write(
        tmp_path / "train.txt",
        "# comment line",
        "a/one.mp4 0",
        "",
        "b/four four.avi   2",
        "c d/five.mkv\t2",
    )
    test = write(tmp_path / "test.txt", "a/two.mp4 0", "six.mp4 1")
    ds = list_dataset(videos, train, test)
    assert ds.classes == ["0", "1", "2"]
    assert ds.splits["train"] == [Clip("a/one.mp4", 0), Clip("b/four four.avi", 2), Clip("c d/five.mkv", 2)]
    assert ds.splits["test"] == [Clip("a/two.mp4", 0), Clip("six.mp4", 1)]
    assert ds.problems == []
    assert ds.spec == {
        "kind": "list",
        "root": str(videos.resolve()),
        "train_list": str(train.resolve()),
        "test_list": str(test.resolve()),
        "classes_file": None,
    }


def test_integer_labels_with_a_gap_report_the_unused_class(videos, tmp_path):
    train = write(tmp_path / "train.txt", "a/one.mp4 0", "b/three.avi 3")
    test = write(tmp_path / "test.txt", "a/two.mp4 0")
    ds = list_dataset(videos, train, test)
    assert ds.classes == ["0", "1", "2", "3"]
    assert ds.splits["train"] == [Clip("a/one.mp4", 0), Clip("b/three.avi", 3)]
    assert len(ds.problems) == 1 and "1, 2" in ds.problems[0] and "no videos" in ds.problems[0]


# --- list: name labels ----------------------------------------------------------------------


def test_name_labels_give_sorted_classes_over_both_lists(videos, tmp_path):
    train = write(tmp_path / "train.txt", "b/three.avi walk", "a/one.mp4 run", "c d/five.mkv walk")
    # 'jump' appears only in the test list and still is a class; CRLF line ends are fine.
    (tmp_path / "test.txt").write_bytes(b"a/two.mp4 run\r\nb/four four.avi jump\r\n")
    ds = list_dataset(videos, train, tmp_path / "test.txt")
    assert ds.classes == ["jump", "run", "walk"]
    assert ds.splits["train"] == [Clip("a/one.mp4", 1), Clip("b/three.avi", 2), Clip("c d/five.mkv", 2)]
    assert ds.splits["test"] == [Clip("a/two.mp4", 1), Clip("b/four four.avi", 0)]
    assert ds.problems == []


def test_paths_are_normalised(videos, tmp_path):
    train = write(tmp_path / "train.txt", "./a/one.mp4 x", "a\\two.mp4 x")
    test = write(tmp_path / "test.txt", "b//three.avi y")
    ds = list_dataset(videos, train, test)
    assert keys(ds.splits["train"]) == ["a/one.mp4", "a/two.mp4"]
    assert keys(ds.splits["test"]) == ["b/three.avi"]


# --- list: classes file ---------------------------------------------------------------------


def test_classes_file_with_integer_labels(videos, tmp_path):
    classes = write(tmp_path / "classes.txt", "run", "walk fast", "jump", "")
    train = write(tmp_path / "train.txt", "a/one.mp4 1", "b/three.avi 2")
    test = write(tmp_path / "test.txt", "a/two.mp4 1", "six.mp4 0")
    ds = list_dataset(videos, train, test, classes)
    assert ds.classes == ["run", "walk fast", "jump"]  # file order, not sorted
    assert ds.splits["train"] == [Clip("a/one.mp4", 1), Clip("b/three.avi", 2)]
    assert ds.splits["test"] == [Clip("a/two.mp4", 1), Clip("six.mp4", 0)]
    assert ds.spec["classes_file"] == str(classes.resolve())
    assert ds.problems == []


def test_classes_file_with_name_labels_keeps_its_order_and_reports_unused(videos, tmp_path):
    classes = write(tmp_path / "classes.txt", "walk", "run", "swim")
    train = write(tmp_path / "train.txt", "a/one.mp4 run", "b/three.avi walk")
    test = write(tmp_path / "test.txt", "a/two.mp4 run")
    ds = list_dataset(videos, train, test, classes)
    assert ds.classes == ["walk", "run", "swim"]
    assert ds.splits["train"] == [Clip("a/one.mp4", 1), Clip("b/three.avi", 0)]
    assert ds.splits["test"] == [Clip("a/two.mp4", 1)]
    assert len(ds.problems) == 1 and ds.problems[0].endswith(": swim")


@pytest.mark.parametrize(
    ("classes_lines", "label", "reason"),
    [
        (("run", "walk"), "2", r"label 2 is out of range: .*classes\.txt names 2 classes \(0 to 1\)"),
        (("run", "walk"), "-1", "label '-1' is negative"),
        (("run", "walk"), "swim", r"class 'swim' is not in .*classes\.txt"),
    ],
)
def test_classes_file_label_errors_name_file_and_line(videos, tmp_path, classes_lines, label, reason):
    classes = write(tmp_path / "classes.txt", *classes_lines)
    train = write(
        tmp_path / "train.txt", "a/one.mp4 " + ("0" if label[-1].isdigit() else "run"), f"b/three.avi {label}"
    )
    test = write(tmp_path / "test.txt", "a/two.mp4 " + ("0" if label[-1].isdigit() else "run"))
    with pytest.raises(DatasetError, match=reason) as err:
        list_dataset(videos, train, test, classes)
    assert str(err.value).startswith(f"{train.resolve()}:2: ")


def test_classes_file_errors(videos, tmp_path):
    train = write(tmp_path / "train.txt", "a/one.mp4 0")
    test = write(tmp_path / "test.txt", "a/two.mp4 0")
    with pytest.raises(DatasetError, match=r"blank line") as err:
        list_dataset(videos, train, test, write(tmp_path / "gap.txt", "run", "", "walk"))
    assert "gap.txt:2:" in str(err.value)
    with pytest.raises(DatasetError, match=r"dup\.txt:3: class 'run' is already named at line 1"):
        list_dataset(videos, train, test, write(tmp_path / "dup.txt", "run", "walk", "run"))
    with pytest.raises(DatasetError, match=r"names no classes"):
        list_dataset(videos, train, test, write(tmp_path / "empty.txt", "", ""))
    with pytest.raises(DatasetError, match=r"classes file .*nope\.txt does not exist"):
        list_dataset(videos, train, test, tmp_path / "nope.txt")


# --- list: malformed lists ------------------------------------------------------------------


def test_mixed_integer_and_name_labels_is_an_error(videos, tmp_path):
    train = write(tmp_path / "train.txt", "a/one.mp4 0", "b/three.avi 1")
    test = write(tmp_path / "test.txt", "a/two.mp4 0", "six.mp4 run")
    with pytest.raises(DatasetError, match="use class indices or class names throughout") as err:
        list_dataset(videos, train, test)
    message = str(err.value)
    assert message.startswith(f"{test.resolve()}:2: label 'run' is a class name")
    assert f"{train.resolve()}:1" in message


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("a/two.mp4", "expected '<path> <label>', found no label"),
        ("/abs/video.mp4 0", "is not a path inside the video folder"),
        ("../outside.mp4 0", "is not a path inside the video folder"),
    ],
)
def test_malformed_line_names_file_and_line(videos, tmp_path, line, reason):
    train = write(tmp_path / "train.txt", "a/one.mp4 0")
    test = write(tmp_path / "test.txt", "# header", "six.mp4 1", line)
    with pytest.raises(DatasetError, match=reason) as err:
        list_dataset(videos, train, test)
    assert str(err.value).startswith(f"{test.resolve()}:3: ")


def test_missing_list_file_and_root(videos, tmp_path):
    train = write(tmp_path / "train.txt", "a/one.mp4 0")
    with pytest.raises(DatasetError, match=r"list file .*no_test\.txt does not exist"):
        list_dataset(videos, train, tmp_path / "no_test.txt")
    with pytest.raises(DatasetError, match=r"list file .*no_train\.txt does not exist"):
        list_dataset(videos, tmp_path / "no_train.txt", train)
    with pytest.raises(DatasetError, match="video folder .* does not exist"):
        list_dataset(tmp_path / "no_videos", train, train)


def test_empty_lists(videos, tmp_path):
    empty = write(tmp_path / "empty.txt", "# nothing here", "")
    with pytest.raises(DatasetError, match="list no videos"):
        list_dataset(videos, empty, empty)
    train = write(tmp_path / "train.txt", "a/one.mp4 0")
    ds = list_dataset(videos, train, empty)
    assert ds.splits == {"train": [Clip("a/one.mp4", 0)], "test": []}
    assert ds.problems == [
        f"{empty.resolve()} lists no videos",
        "the train split has videos of one class only (0); a classifier needs at least 2 classes to learn anything",
    ]


# --- list: problems that do not stop the dataset --------------------------------------------


def test_duplicates_overlap_and_missing_videos_are_reported(videos, tmp_path):
    train = write(
        tmp_path / "train.txt",
        "a/one.mp4 0",  # 1
        "b/three.avi 1",  # 2: also in test -> dropped from train
        "a/one.mp4 0",  # 3: duplicate of 1
        "ghost/x.mp4 1",  # 4: does not exist, stays
        "a/one.mp4 1",  # 5: duplicate of 1 with another label
        "ghost/y.mp4 0",  # 6: does not exist, stays
    )
    test = write(tmp_path / "test.txt", "a/two.mp4 0", "b/three.avi 1", "a/two.mp4 0", "ghost/z.mp4 1")
    ds = list_dataset(videos, train, test)
    tr, te = train.resolve(), test.resolve()
    assert ds.splits["train"] == [Clip("a/one.mp4", 0), Clip("ghost/x.mp4", 1), Clip("ghost/y.mp4", 0)]
    assert ds.splits["test"] == [Clip("a/two.mp4", 0), Clip("b/three.avi", 1), Clip("ghost/z.mp4", 1)]
    root = videos.resolve()
    assert ds.problems == [
        f"{tr}:3: duplicate of line 1",
        f"{tr}:5: duplicate of line 1 (labelled '0' there, '1' here; line 1 kept)",
        f"{te}:3: duplicate of line 1",
        f"{tr}:2: 'b/three.avi' is also in the test list ({te}:2); dropped from train",
        f"{tr}: 2 listed videos do not exist, e.g. {root / 'ghost/x.mp4'}",
        f"{te}: 1 listed videos do not exist, e.g. {root / 'ghost/z.mp4'}",
    ]
    # every clip once, train and test disjoint
    assert not set(keys(ds.splits["train"])) & set(keys(ds.splits["test"]))
    assert len(ds.clips()) == 6


# --- list: spec round trip ------------------------------------------------------------------


@pytest.mark.parametrize("with_classes", [False, True])
def test_dataset_from_spec_rebuilds_a_list_dataset(videos, tmp_path, monkeypatch, with_classes):
    monkeypatch.chdir(tmp_path)
    classes = write(tmp_path / "classes.txt", "run", "walk") if with_classes else None
    write(tmp_path / "train.txt", "a/one.mp4 0", "b/three.avi 1", "a/one.mp4 0", "missing.mp4 1")
    write(tmp_path / "test.txt", "a/two.mp4 0", "b/three.avi 1")
    # relative paths: the spec records absolute ones, so it works from any folder
    ds = list_dataset("videos", "train.txt", "test.txt", "classes.txt" if classes else None)
    spec = json.loads(json.dumps(ds.spec))
    monkeypatch.chdir(videos)
    again = dataset_from_spec(spec)
    assert isinstance(again, VideoDataset) and again == ds
    assert again.classes == (["run", "walk"] if with_classes else ["0", "1"])
    assert again.clips() == ds.clips() and len(again.problems) == 3


# --- folder ---------------------------------------------------------------------------------


def test_folder_dataset_reports_empty_class_and_keeps_it(tmp_path):
    root = tmp_path / "videos"
    touch(root, "a/1.mp4", "a/2.mp4", "a/3.mp4", "c/1.mp4", "c/2.mp4", "b/notes.txt")
    ds = folder_dataset(root, test_fraction=0.5, seed=0)
    assert ds.classes == ["a", "b", "c"]
    assert {c.label for c in ds.clips()} == {0, 2}
    assert len(ds.clips()) == 5
    assert ds.problems == [f"class b has no videos in {root.resolve() / 'b'}"]
    assert dataset_from_spec(ds.spec) == ds


def test_folder_lists_duplicates_overlap_missing(tmp_path):
    root = tmp_path / "videos"
    touch(root, "a/1.mp4", "a/2.mp4", "b/1.mp4", "b/2.mp4")
    (root / "empty").mkdir()
    write(root / "train.txt", "a/1.mp4", "b/1.mp4", "a/1.mp4", "b/gone.mp4", "a/2.mp4")
    write(root / "test.txt", "a/2.mp4", "b/2.mp4", "b/2.mp4")
    ds = folder_dataset(root)
    r = root.resolve()
    assert ds.classes == ["a", "b", "empty"]
    assert ds.splits["train"] == [Clip("a/1.mp4", 0), Clip("b/1.mp4", 1), Clip("b/gone.mp4", 1)]
    assert ds.splits["test"] == [Clip("a/2.mp4", 0), Clip("b/2.mp4", 1)]
    assert ds.problems == [
        f"class empty has no videos in {r / 'empty'}",
        f"{r / 'train.txt'}:3: duplicate of line 1",
        f"{r / 'test.txt'}:3: duplicate of line 2",
        f"{r / 'train.txt'}:5: 'a/2.mp4' is also in the test list ({r / 'test.txt'}:1); dropped from train",
        f"{r / 'train.txt'}: 1 listed videos do not exist, e.g. {r / 'b/gone.mp4'}",
    ]
    assert dataset_from_spec(ds.spec) == ds


def test_folder_with_only_one_list_reports_it_is_ignored(tmp_path):
    root = tmp_path / "videos"
    touch(root, "a/1.mp4", "a/2.mp4", "b/1.mp4")
    write(root / "train.txt", "a/1.mp4")
    ds = folder_dataset(root, test_fraction=0.0)
    assert len(ds.splits["train"]) == 3 and ds.splits["test"] == []
    r = root.resolve()
    assert ds.problems == [
        f"{r / 'train.txt'} is ignored because {r / 'test.txt'} does not exist; using a seeded split"
    ]


def test_folder_list_line_errors_still_name_file_and_line(tmp_path):
    root = tmp_path / "videos"
    touch(root, "a/1.mp4")
    write(root / "train.txt", "a/1.mp4")
    write(root / "test.txt", "a/1.mp4", "nope/1.mp4")
    with pytest.raises(DatasetError, match=r"test\.txt:2: 'nope/1\.mp4' is not <class>/<video>"):
        folder_dataset(root)


def test_problems_default_keeps_old_constructors():
    ds = VideoDataset(Path("/x"), ["a"], {"train": [Clip("a/1.mp4", 0)]})
    assert ds.problems == [] and ds.spec == {}
    assert VideoDataset(Path("/x"), ["a"], {}, {"kind": "folder"}).problems == []


# --- folder: names with spaces, links, folders, one class (issue 13) -------------------------


def test_folder_lists_take_the_whole_line_and_accept_a_trailing_label(tmp_path):
    root = tmp_path / "videos"
    touch(root, "a/1.mp4", "a/2.mp4", "b/spaces ünï cödé.mp4", "b/x.mp4", "b/7 3.mp4")
    write(root / "train.txt", "b/spaces ünï cödé.mp4", "a/1.mp4 0", "b/7 3.mp4")
    write(root / "test.txt", "  a/2.mp4  ", "b/x.mp4")
    ds = folder_dataset(root)
    assert ds.splits["train"] == [Clip("a/1.mp4", 0), Clip("b/7 3.mp4", 1), Clip("b/spaces ünï cödé.mp4", 1)]
    assert ds.splits["test"] == [Clip("a/2.mp4", 0), Clip("b/x.mp4", 1)]
    assert ds.problems == [] and ds.seeded is None


def test_folder_reports_broken_links_link_loops_and_folders_named_as_videos(tmp_path):
    root = tmp_path / "videos"
    touch(root, "a/1.mp4", "a/2.mp4", "b/1.mp4", "b/2.mp4")
    (root / "a" / "dangling.mp4").symlink_to(root / "a" / "nowhere.mp4")
    (root / "a" / "loop.mp4").symlink_to(root / "a" / "loop.mp4")
    (root / "b" / "folder.mp4").mkdir()
    (root / "c").symlink_to(tmp_path / "gone")
    r = root.resolve()
    ds = folder_dataset(root)
    assert [c.key for c in ds.clips()] == ["a/1.mp4", "a/2.mp4", "b/1.mp4", "b/2.mp4"]
    assert ds.classes == ["a", "b"]
    assert ds.problems == [
        f"{r / 'c'}: broken symbolic link (its target {tmp_path / 'gone'} does not exist); not used as a class folder",
        f"{r / 'a/dangling.mp4'}: broken symbolic link (its target {root / 'a/nowhere.mp4'} does not exist); skipped",
        f"{r / 'a/loop.mp4'}: symbolic link loop (the link leads back to itself); skipped",
        f"{r / 'b/folder.mp4'}: is a folder, not a video file; skipped",
    ]
    # Listed in train.txt / test.txt, each is named with its line and what it is.
    write(root / "train.txt", "a/1.mp4", "b/folder.mp4", "a/loop.mp4", "b/gone.mp4")
    write(root / "test.txt", "a/2.mp4", "b/2.mp4")
    listed = [p for p in folder_dataset(root).problems if "train.txt" in p]
    assert listed == [
        f"{r / 'train.txt'}: 1 listed videos do not exist, e.g. {r / 'b/gone.mp4'}",
        f"{r / 'train.txt'}:2: {r / 'b/folder.mp4'}: is a folder, not a video file",
        f"{r / 'train.txt'}:3: {r / 'a/loop.mp4'}: symbolic link loop (the link leads back to itself)",
    ]


def test_a_folder_named_as_a_video_fails_as_a_folder(tmp_path):
    from tsmap.data.video import FrameGeometry, VideoError, read_distinct_frames

    (tmp_path / "clip.mp4").mkdir()
    with pytest.raises(VideoError, match="is a folder, not a video file"):
        read_distinct_frames(tmp_path / "clip.mp4", 8, FrameGeometry(64, 64))


def test_a_train_split_of_one_class_is_reported(tmp_path):
    root = tmp_path / "videos"
    touch(root, "a/1.mp4", "a/2.mp4", "a/3.mp4", "b/1.mp4")
    problem = (
        "the train split has videos of one class only (a); a classifier needs at least 2 classes to learn anything"
    )
    write(root / "train.txt", "a/1.mp4", "a/2.mp4")
    write(root / "test.txt", "a/3.mp4", "b/1.mp4")
    assert folder_dataset(root).problems == [problem]
    (root / "train.txt").unlink()
    assert problem not in folder_dataset(root, test_fraction=0.0).problems
    one = tmp_path / "one"
    touch(one, "a/1.mp4", "a/2.mp4")
    assert folder_dataset(one).problems == [problem]


# --- one dispatcher --------------------------------------------------------------------------


def test_open_dataset_is_the_one_dispatcher_and_its_errors_name_no_flags(videos, tmp_path):
    train = write(tmp_path / "train.txt", "a/one.mp4 0", "b/three.avi 1")
    test = write(tmp_path / "test.txt", "a/two.mp4 0")
    ds = open_dataset("list", videos, train_list=train, test_list=test)
    assert ds == list_dataset(videos, train, test) and dataset_from_spec(ds.spec) == ds
    assert open_dataset("folder", videos, split=2) == folder_dataset(videos)  # split: official kinds only
    for kind, options, reason in [
        ("list", {"train_list": train}, "a list dataset needs both list files"),
        ("hmdb51", {}, "a hmdb51 dataset needs the folder of its official split files"),
        ("nope", {}, "unknown dataset kind 'nope'; the kinds are folder, list, hmdb51, ucf101"),
    ]:
        with pytest.raises(DatasetError, match=reason) as err:
            open_dataset(kind, videos, **options)
        assert "--" not in str(err.value)
    with pytest.raises(DatasetError, match="a dataset spec names its kind and root"):
        dataset_from_spec({"kind": "folder"})


def test_a_recorded_split_keeps_class_indices_and_splits(tmp_path):
    from tsmap.data.datasets import apply_recorded_split, split_record

    root = tmp_path / "videos"
    touch(root, "b/1.mp4", "b/2.mp4", "c/1.mp4", "c/2.mp4")
    record = split_record(folder_dataset(root, test_fraction=0.5))
    touch(root, "a/1.mp4", "a/2.mp4", "b/3.mp4")  # a new class sorts first; b gains a video
    now = folder_dataset(root, test_fraction=0.5)
    assert now.classes == ["a", "b", "c"]
    kept = apply_recorded_split(now, record, add_new=False)
    assert kept.classes == ["b", "c"]
    assert {s: [c.key for c in kept.splits[s]] for s in ("train", "test")} == {s: record[s] for s in ("train", "test")}
    assert any("3 videos in" in p and "came after its split was recorded" in p for p in kept.problems)
    grown = apply_recorded_split(now, record)
    assert grown.classes == ["b", "c", "a"]  # old indices kept, the new class appended
    assert {c.key: c.label for c in grown.clips()}["a/1.mp4"] == 2
    for split in ("train", "test"):
        assert set(record[split]) <= {c.key for c in grown.splits[split]}
    assert split_record(grown)["classes"] == ["b", "c", "a"]
