"""The fused conv blocks of the VideoMap head (``ConvBlock`` / ``ConvPoolReLU``) against the
reference layers they replace: nn.Conv2d, nn.MaxPool2d and nn.ReLU run one by one."""

import copy

import pytest
import torch
from torch import nn

from tsmap.heads.videomap_head import (
    ConvBlock,
    VideoMapHead,
    _one_channel_input_grad,
    channels_last_1ch,
    reference_layers,
)

TOL = {"rtol": 1e-5, "atol": 1e-5}


def _image(b, c, h, w, seed=0, grad=True):
    x = torch.randn(b, c, h, w, generator=torch.Generator().manual_seed(seed))
    x = channels_last_1ch(x) if c == 1 else x.contiguous(memory_format=torch.channels_last)
    return x.requires_grad_(grad)


def _reference(block: ConvBlock, x: torch.Tensor) -> torch.Tensor:
    conv, pool, relu = block
    assert type(conv) is nn.Conv2d and type(pool) is nn.MaxPool2d and type(relu) is nn.ReLU
    return relu(pool(conv(x)))


def _fused_and_reference(block: ConvBlock, x: torch.Tensor, out_grad_seed: int = 1):
    """Output and gradients (input, weight, bias) of the fused block and of its reference layers."""
    results = []
    for run in ("fused", "reference"):
        block.zero_grad(set_to_none=True)
        xi = x.detach().clone(memory_format=torch.preserve_format).requires_grad_(x.requires_grad)
        out = block(xi) if run == "fused" else _reference(block, xi)
        if run == "fused":
            assert type(out.grad_fn).__name__ == "ConvPoolReLUBackward"
        g = torch.randn(out.shape, generator=torch.Generator().manual_seed(out_grad_seed))
        out.backward(g)
        conv = block[0]
        results.append((out.detach(), xi.grad, conv.weight.grad.clone(), conv.bias.grad.clone()))
    return results


@pytest.mark.parametrize(
    "c_in,c_out,time_stride,h,w,input_grad",
    [
        (1, 16, 2, 24, 40, True),  # the head's first conv: input gradient as a stride-8 conv (40 % 8 == 0)
        (1, 16, 2, 23, 37, True),  # odd sizes, W not a multiple of 8: oneDNN's input gradient
        (1, 8, 1, 24, 48, False),  # the attention branch's first block: no input gradient
        (8, 8, 1, 24, 24, True),  # the attention branch's second block
        (16, 32, 2, 13, 21, True),  # weight gradient through NCHW copies (16+ input channels)
        (32, 32, 2, 8, 16, True),
    ],
)
def test_fused_block_matches_reference_layers(c_in, c_out, time_stride, h, w, input_grad):
    torch.manual_seed(0)
    block = ConvBlock(c_in, c_out, time_stride).to(memory_format=torch.channels_last)
    x = _image(3, c_in, h, w, grad=input_grad)
    (out, gx, gw, gb), (ref_out, ref_gx, ref_gw, ref_gb) = _fused_and_reference(block, x)
    torch.testing.assert_close(out, ref_out, **TOL)
    assert out.shape == ref_out.shape and out.stride() == ref_out.stride()
    if input_grad:
        torch.testing.assert_close(gx, ref_gx, **TOL)
    else:
        assert gx is None and ref_gx is None
    torch.testing.assert_close(gw, ref_gw, **TOL)
    torch.testing.assert_close(gb, ref_gb, **TOL)
    assert gw.shape == block[0].weight.shape


def test_ties_route_the_gradient_to_the_same_maximum():
    # A map with constant regions: the conv's output is its bias over them, so every pool
    # window there holds equal maxima; the gradient must reach the same one (the first).
    torch.manual_seed(0)
    block = ConvBlock(1, 16).to(memory_format=torch.channels_last)
    x = torch.zeros(2, 1, 24, 32)
    x[:, :, 6:10, 8:20] = 1.0
    x[1, :, 15:, :] = torch.randn(9, 32)
    (out, gx, gw, gb), (ref_out, ref_gx, ref_gw, ref_gb) = _fused_and_reference(block, channels_last_1ch(x))
    torch.testing.assert_close(out, ref_out, rtol=0, atol=0)
    for got, want in ((gx, ref_gx), (gw, ref_gw), (gb, ref_gb)):
        torch.testing.assert_close(got, want, **TOL)


def test_one_channel_input_grad_is_the_conv_input_gradient():
    torch.manual_seed(0)
    weight = torch.randn(16, 1, 5, 5) * 0.2  # nn.Conv2d's initial scale, 1 / sqrt(25)
    grad_y = torch.randn(2, 16, 12, 64).contiguous(memory_format=torch.channels_last)
    want = torch.nn.grad.conv2d_input((2, 1, 12, 64), weight, grad_y, padding=2)
    got = _one_channel_input_grad(grad_y, weight)
    torch.testing.assert_close(got, want, **TOL)
    assert got.data_ptr() == got.contiguous().data_ptr()  # a view of the phases, no copy


@pytest.mark.parametrize(
    "attention,scoring", [("A0A1A2", "rows"), ("A0A1A2", "global"), ("A1A2", "rows"), ("none", "rows")]
)
def test_head_matches_reference_layers(attention, scoring):
    torch.manual_seed(0)
    head = VideoMapHead(5, 32, 48, attention=attention, attention_scoring=scoring).train()
    maps = torch.randn(3, 32, 48)
    labels = torch.tensor([0, 3, 4])
    results = []
    for fused in (True, False):
        model = copy.deepcopy(head)
        torch.manual_seed(1)  # the same dropout mask both times
        with reference_layers() if not fused else torch.enable_grad():
            loss = nn.functional.cross_entropy(model(maps), labels)
            loss.backward()
        results.append((loss.detach(), {n: p.grad for n, p in model.named_parameters()}))
    (loss, grads), (ref_loss, ref_grads) = results
    torch.testing.assert_close(loss, ref_loss, **TOL)
    assert grads.keys() == ref_grads.keys()
    for name in grads:
        torch.testing.assert_close(grads[name], ref_grads[name], **TOL, msg=name)


def test_parameters_and_checkpoints_are_those_of_plain_sequential_blocks():
    torch.manual_seed(0)
    head = VideoMapHead(5, 32, 48)
    # A head whose blocks are plain nn.Sequential (as saved before ConvBlock existed).
    old = copy.deepcopy(head)
    for parent in (old, old.attention):
        for name, child in list(parent.named_children()):
            if isinstance(child, ConvBlock):
                setattr(parent, name, nn.Sequential(*child))
    old.attention.blocks = nn.Sequential(*(nn.Sequential(*b) for b in old.attention.blocks))
    shapes = {k: v.shape for k, v in head.state_dict().items()}
    assert shapes == {k: v.shape for k, v in old.state_dict().items()}
    assert {"block1.0.weight", "block3.0.bias", "attention.blocks.0.0.weight", "attention.blocks.1.0.bias"} <= set(
        shapes
    )
    with torch.no_grad():
        for p in old.parameters():
            p.normal_()
    head.load_state_dict(old.state_dict())
    maps = torch.randn(2, 32, 48)
    torch.testing.assert_close(head.eval()(maps), old.eval()(maps), **TOL)


def test_hooked_or_unsupported_inputs_run_the_reference_layers():
    torch.manual_seed(0)
    block = ConvBlock(1, 8).to(memory_format=torch.channels_last)
    x = _image(2, 1, 16, 24)
    assert type(block(x).grad_fn).__name__ == "ConvPoolReLUBackward"
    # A hook on the conv (Grad-CAM's) sees the conv's full-resolution output.
    seen = {}

    def hook(module, inputs, out):
        seen["shape"] = out.shape

    handle = block[0].register_forward_hook(hook)
    assert type(block(x).grad_fn).__name__ != "ConvPoolReLUBackward"
    assert seen["shape"] == (2, 8, 16, 24)
    handle.remove()
    assert type(block.double()(x.double()).grad_fn).__name__ != "ConvPoolReLUBackward"
    block.float()
    with reference_layers():
        assert type(block(x).grad_fn).__name__ != "ConvPoolReLUBackward"
    assert ConvBlock.fused
