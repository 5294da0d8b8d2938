"""Temporal crops of stored VideoMaps keep the order of rows and most of the video."""

import pytest
import torch

from tsmap.cli import main
from tsmap.videomap.augment import temporal_crop, temporal_crop_batch

T = 32


def _row_ids() -> torch.Tensor:
    return torch.arange(T, dtype=torch.float32)[:, None].repeat(1, 3)  # row i holds i


@pytest.mark.parametrize("fraction", [0.5, 0.8, 0.95])
def test_crop_keeps_order_and_span(fraction):
    generator = torch.Generator().manual_seed(0)
    spans = set()
    for _ in range(200):
        out = temporal_crop(_row_ids(), fraction, generator)
        assert out.shape == (T, 3)
        rows = out[:, 0]
        assert torch.all(rows[1:] >= rows[:-1]), "rows must stay in time order"
        assert torch.all(out == rows[:, None])  # whole rows are taken, features not mixed
        span = int(rows[-1] - rows[0]) + 1
        assert span >= round(fraction * T) - 1
        spans.add((int(rows[0]), span))
    assert len(spans) > 5, "the window should move and change size"


def test_full_fraction_is_identity_and_batches_are_independent():
    maps = _row_ids().repeat(8, 1, 1)
    assert torch.equal(temporal_crop_batch(maps, 1.0), maps)
    torch.manual_seed(0)
    out = temporal_crop_batch(maps, 0.5)
    assert len({tuple(m[:, 0].tolist()) for m in out}) > 1


def test_bad_fraction_is_refused(capsys):
    with pytest.raises(ValueError):
        temporal_crop(_row_ids(), 0.0)
    with pytest.raises(SystemExit):
        main(["train", "--store", "s", "--run", "r", "--temporal-crop", "1.5"])
    assert "--temporal-crop" in capsys.readouterr().err


def test_feature_dropout_drops_whole_columns_and_keeps_the_mean():
    from tsmap.videomap.augment import feature_dropout_batch

    maps = torch.ones(64, 5, 200)
    out = feature_dropout_batch(maps, 0.25, torch.Generator().manual_seed(0))
    # A column is dropped on every row of a map or on none.
    assert torch.equal(out.amin(dim=1) == 0, out.amax(dim=1) == 0)
    assert abs(float((out[:, 0] == 0).float().mean()) - 0.25) < 0.02
    assert abs(float(out.mean()) - 1.0) < 0.03
    assert feature_dropout_batch(maps, 0.0) is maps


def test_mixup_mixes_two_maps_row_by_row():
    from tsmap.videomap.augment import mixup_batch

    torch.manual_seed(0)
    maps = torch.arange(4 * 3 * 2, dtype=torch.float32).reshape(4, 3, 2)
    labels = torch.tensor([0, 1, 2, 3])
    mixed, y, y2, lam = mixup_batch(maps, labels, 0.4)
    assert 0 < lam < 1 and torch.equal(y, labels)
    other = maps[[int(i) for i in y2]]
    torch.testing.assert_close(mixed, lam * maps + (1 - lam) * other)
    same = mixup_batch(maps, labels, 0.0)
    assert same[0] is maps and same[3] == 1.0
