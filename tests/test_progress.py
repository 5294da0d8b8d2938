"""Progress off a terminal: a few plain lines, not a redraw per update."""

import io

from tqdm import tqdm

from tsmap.progress import PlainProgress, progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_off_a_terminal_1000_updates_print_about_ten_plain_lines():
    out = io.StringIO()
    with progress(total=1000, desc="videos", unit="video", file=out, dynamic_ncols=True) as bar:
        assert isinstance(bar, PlainProgress)
        for i in range(1000):
            bar.set_postfix(frames_per_s=f"{100 + i}")
            bar.update(1)
    lines = out.getvalue().splitlines()
    assert 5 <= len(lines) <= 12
    assert "\r" not in out.getvalue()
    assert lines[0].startswith("videos: 100/1000 video (10%)") and "elapsed" in lines[0]
    assert lines[-1].startswith("videos: 1000/1000 video (100%)") and lines[-1].endswith("frames_per_s=1099")


def test_iteration_initial_postfix_and_a_last_line_at_close():
    out = io.StringIO()
    bar = progress(range(3, 10), desc="train videomap", unit="epoch", initial=3, total=10, file=out)
    seen = []
    for epoch in bar:
        seen.append(epoch)
        bar.set_postfix({"loss": "0.500", "train": 0.25})
    assert seen == list(range(3, 10)) and bar.n == 10 and bar.closed
    lines = out.getvalue().splitlines()
    assert len(lines) <= 8  # 40 %, 50 %, ... 100 %
    assert lines[-1].startswith("train videomap: 10/10 epoch (100%)") and "loss=0.500, train=0.25" in lines[-1]
    # Closed early (a break): the count reached is printed once more at close.
    out = io.StringIO()
    bar = progress(total=100, desc="x", file=out, every_seconds=1e9)
    bar.update(3)
    bar.set_postfix_str("note")
    bar.close()
    bar.close()
    assert out.getvalue().splitlines() == [out.getvalue().splitlines()[0]]
    assert out.getvalue().startswith("x: 3/100 it (3%)") and out.getvalue().rstrip().endswith("note")


def test_time_bound_lines_and_unknown_totals():
    out = io.StringIO()
    bar = progress(desc="decode", file=out, every_seconds=0.0)  # no total: a line whenever the time bound passes
    bar.update(2)
    bar.update(5)
    bar.close()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("decode: 2 it") and lines[-1].startswith("decode: 7 it") and len(lines) == 2


def test_disabled_prints_nothing_and_still_iterates():
    out = io.StringIO()
    assert list(progress(range(4), file=out, disable=True)) == [0, 1, 2, 3]
    bar = progress(total=5, file=out, disable=None)  # tqdm's "only on a terminal"
    bar.update(5)
    bar.close()
    assert out.getvalue() == ""


def test_a_terminal_gets_a_tqdm_bar_and_write_works_as_in_tqdm(capsys):
    bar = progress(total=3, file=Terminal(), desc="t")
    assert isinstance(bar, tqdm)
    bar.close()
    progress.write("a message")
    progress(total=2, file=io.StringIO()).write("another")
    assert capsys.readouterr().out == "a message\nanother\n"
