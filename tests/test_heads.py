"""The head ConvNet, the hierarchical temporal attention of Eq. 2, and the TSN baseline."""

import pytest
import torch
import torch.nn.functional as F

from tsmap.heads.checkpoint import load_head, save_head
from tsmap.heads.tsn import TSNHead
from tsmap.heads.videomap_head import ATTENTION_VARIANTS, VideoMapHead, pool_attention, pooled_size

T, L, C = 32, 48, 5


def _head(attention="A0A1A2", t=T) -> VideoMapHead:
    torch.manual_seed(0)
    return VideoMapHead(C, t, L, attention=attention).eval()


@pytest.mark.parametrize("attention", ATTENTION_VARIANTS)
@pytest.mark.parametrize("t", [32, 25, 7])
def test_head_shapes(attention, t):
    head = _head(attention, t)
    assert head(torch.randn(3, t, L)).shape == (3, C)


def test_a1_a2_are_stride2_max_pools_of_a0():
    head = _head()
    x = head.standardize(torch.randn(2, T, L)).unsqueeze(1)
    a0, a1, a2 = head.attention_weights(x)
    assert a0.shape == (2, T) and a1.shape == (2, pooled_size(T)) and a2.shape == (2, pooled_size(pooled_size(T)))
    # Definition written out: a1[t] = max(a0[2t-1], a0[2t], a0[2t+1]).
    padded = F.pad(a0, (1, 1), value=float("-inf"))
    expected_a1 = torch.stack([padded[:, 2 * t : 2 * t + 3].max(1).values for t in range(a1.shape[1])], 1)
    torch.testing.assert_close(a1, expected_a1)
    torch.testing.assert_close(a2, pool_attention(a1))
    # Softmax x T: weights are positive and average 1 over the frames.
    assert torch.all(a0 > 0)
    torch.testing.assert_close(a0.mean(1), torch.ones(2))


def _forced_attention(head, a0):
    a1 = pool_attention(a0)
    head.attention_weights = lambda x: (
        a0.expand(x.shape[0], -1),
        *(a.expand(x.shape[0], -1) for a in (a1, pool_attention(a1))),
    )


def test_a0_scales_rows_of_the_input_map():
    # Eq. 2 with a0 zero on frames 8..15: those rows cannot affect the output.
    a0 = torch.ones(1, T)
    a0[:, 8:16] = 0
    maps = torch.randn(2, T, L)
    changed = maps.clone()
    changed[:, 8:16] += 5 * torch.randn(2, 8, L)
    head = _head("A0")
    _forced_attention(head, a0)
    torch.testing.assert_close(head(maps), head(changed))
    plain = _head("none")
    assert not torch.allclose(plain(maps), plain(changed))


def test_a1_a2_scale_rows_of_the_feature_maps():
    head = _head("A1A2")
    a0 = torch.rand(1, T) + 0.5
    _forced_attention(head, a0)
    seen = {}
    head.block2.register_forward_pre_hook(lambda m, inp: seen.__setitem__("into2", inp[0]))
    head.block3.register_forward_pre_hook(lambda m, inp: seen.__setitem__("into3", inp[0]))
    out1 = {}
    head.block1.register_forward_hook(lambda m, inp, out: out1.__setitem__("h", out))
    h2 = {}
    head.block2.register_forward_hook(lambda m, inp, out: h2.__setitem__("h", out))
    head(torch.randn(2, T, L))
    a1 = pool_attention(a0)
    torch.testing.assert_close(seen["into2"], out1["h"] * a1[:, None, :, None])
    torch.testing.assert_close(seen["into3"], h2["h"] * pool_attention(a1)[:, None, :, None])


def test_other_density_is_resampled_to_trained_length():
    head = _head("none", t=32)
    maps = torch.randn(1, 16, L)
    # 16 rows laid out on 32: each row repeated twice, in order.
    torch.testing.assert_close(head(maps), head(maps.repeat_interleave(2, dim=1)))


def test_tsn_ignores_frame_order_videomap_head_does_not():
    torch.manual_seed(0)
    # 33 rows: with an odd length the 25 test rows of a reversed map are exactly the
    # reversed rows (for an even length the middle sample sits between two rows).
    odd = torch.randn(4, 33, L)
    tsn = TSNHead(C, L).eval()
    torch.testing.assert_close(tsn(odd), tsn(odd.flip(1)))
    maps = torch.randn(4, T, L)
    reversed_maps = maps.flip(1)
    head = _head()
    assert not torch.allclose(head(maps), head(reversed_maps), atol=1e-4)


def test_tsn_trains_on_three_segment_frames():
    tsn = TSNHead(C, L, dropout=0.0).train()
    maps = torch.zeros(1, 30, L)
    maps[0, :, 0] = torch.arange(30).float()  # feature 0 tells the row
    picked = []
    tsn.frame_scores = lambda rows: (picked.append(rows[0, :, 0].clone()), rows[..., :C])[1]
    for _ in range(20):
        tsn(maps)
    rows = torch.stack(picked)
    assert rows.shape == (20, 3)
    assert torch.all((rows[:, 0] < 10) & (rows[:, 1] >= 10) & (rows[:, 1] < 20) & (rows[:, 2] >= 20))


def test_checkpoint_roundtrip(tmp_path):
    head = _head()
    head.standardize.mean.fill_(0.25)
    save_head(tmp_path / "h.pt", head, [f"c{i}" for i in range(C)], {"frames": T})
    loaded, meta = load_head(tmp_path / "h.pt")
    x = torch.randn(2, T, L)
    torch.testing.assert_close(loaded(x), head(x))
    assert meta["classes"][0] == "c0" and meta["store_settings"] == {"frames": T}
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a tsmap checkpoint"):
        load_head(tmp_path / "bad.pt")


def test_a_narrower_head_keeps_its_widths_through_a_checkpoint(tmp_path):
    torch.manual_seed(0)
    head = VideoMapHead(C, T, L, widths=(4, 8, 8)).eval()
    assert [head.block1[0].out_channels, head.block2[0].out_channels, head.block3[0].out_channels] == [4, 8, 8]
    assert sum(p.numel() for p in head.parameters()) < sum(p.numel() for p in _head().parameters())
    save_head(tmp_path / "h.pt", head, [f"c{i}" for i in range(C)], {"frames": T})
    loaded, _ = load_head(tmp_path / "h.pt")
    x = torch.randn(2, T, L)
    torch.testing.assert_close(loaded(x), head(x))
    assert "widths" not in _head().config  # the paper's head: checkpoints as before
    with pytest.raises(ValueError, match="widths"):
        VideoMapHead(C, T, L, widths=(4, 8))


def test_standardizer_centres_columns_and_shares_one_scale():
    gen = torch.Generator().manual_seed(0)
    maps = torch.randn(64, T, L, generator=gen) * 2.0 + 3.0
    maps[..., 0] = 5.0 + 1e-3 * torch.randn(64, T, generator=gen)  # a column that barely varies
    head = _head()
    head.standardize.fit([maps[:32], maps[32:]])
    out = head.standardize(maps)
    torch.testing.assert_close(out.mean(dim=(0, 1)), torch.zeros(L), atol=1e-4, rtol=0)
    # One scale for every column: the near-constant column stays near 0 instead of being
    # blown up to unit variance like the informative ones.
    assert torch.all(head.standardize.std == head.standardize.std[0])
    assert out[..., 0].std() < 1e-3
    assert 0.9 < out[..., 1:].std() < 1.1


def test_standardizer_column_scale_gives_every_column_unit_variance():
    gen = torch.Generator().manual_seed(0)
    maps = torch.randn(64, T, L, generator=gen) * torch.linspace(0.1, 5.0, L) + 3.0
    head = VideoMapHead(3, T, L, scale="column")
    head.standardize.fit([maps])
    out = head.standardize(maps)
    assert head.config["scale"] == "column"
    torch.testing.assert_close(out.std(dim=(0, 1)), torch.ones(L), atol=1e-3, rtol=0)
    with pytest.raises(ValueError, match="scale must be one of"):
        VideoMapHead(3, T, L, scale="row")


def test_row_attention_weighs_a_frame_by_its_content_wherever_it_is():
    # Per-row scoring: a frame's score depends on the frames within the branch's receptive
    # field (6 rows either side: two 5-row convs, two 3-row pools) and not on its position,
    # so the same content moved 10 rows later gets the same score. The paper's global FC
    # scores positions with separate weights.
    torch.manual_seed(0)
    maps = torch.randn(1, T, L)
    moved = maps.roll(10, dims=1)
    for scoring, same in (("rows", True), ("global", False)):
        torch.manual_seed(0)
        head = VideoMapHead(C, T, L, attention="A0", attention_scoring=scoring).eval()
        scores = [torch.log(head.attention(head.standardize(m).unsqueeze(1)))[0] for m in (maps, moved)]
        # Rows 6..T-17 and their moved copies lie 6+ rows from either edge (no padding seen);
        # softmax adds one constant per map, so compare scores up to a shift.
        a, b = scores[0][6 : T - 16], scores[1][16 : T - 6]
        assert torch.allclose(a - a.mean(), b - b.mean(), atol=1e-5) == same, scoring


def test_heads_saved_before_row_attention_load_with_the_global_branch(tmp_path):
    torch.manual_seed(0)
    head = VideoMapHead(C, T, L, attention="A0A1A2", attention_scoring="global").eval()
    save_head(tmp_path / "old.pt", head, [f"c{i}" for i in range(C)], {"frames": T})
    payload = torch.load(tmp_path / "old.pt", weights_only=True)
    del payload["config"]["attention_scoring"]  # as written by tsmap before the option existed
    torch.save(payload, tmp_path / "old.pt")
    loaded, _ = load_head(tmp_path / "old.pt")
    assert loaded.attention.scoring == "global"
    x = torch.randn(2, T, L)
    torch.testing.assert_close(loaded(x), head(x))
    for attention in ("A0A1A2", "none"):  # refused even where no branch is built
        with pytest.raises(ValueError, match="attention scoring"):
            VideoMapHead(C, T, L, attention=attention, attention_scoring="per-frame")
