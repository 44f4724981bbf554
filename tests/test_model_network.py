"""Model shapes and each variant's forward pass (real torch forward)."""

import pytest

torch = pytest.importorskip("torch")

from streamwatch import CLASS_NAMES  # noqa: E402
from streamwatch.model import network  # noqa: E402


@pytest.mark.parametrize("variant", network.VARIANTS)
def test_each_variant_forward_multi_view(variant):
    torch.manual_seed(0)
    model = network.build_model(variant, views=3).eval()
    x = torch.randn(2, 3, 3, 64, 64)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (2, len(CLASS_NAMES))
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("variant", network.VARIANTS)
def test_backbone_is_a_plain_single_image_mobilenet_v2(variant):
    model = network.build_backbone(variant).eval()
    with torch.no_grad():
        y = model(torch.randn(1, 3, 64, 64))
    assert y.shape == (1, 8)
    n = network.count_parameters(model)
    # MobileNetV2 width 1.0 with an 8-way classifier: ~2.24 M parameters (ECA adds only a few dozen)
    assert 2.2e6 < n < 2.3e6


def test_single_view_model_matches_the_paper_head():
    m = network.build_model("eca_1", views=1)
    assert m.head[1].in_features == 1280
    m3 = network.build_model("eca_1", views=3)
    assert m3.head[1].in_features == 3 * 1280


@pytest.mark.parametrize("channels,k", [(16, 3), (32, 3), (64, 3), (96, 3), (128, 5), (160, 5), (320, 5), (1280, 5), (512, 5), (8, 3)])
def test_eca_adaptive_kernel_gamma2_b1(channels, k):
    assert network.eca_kernel_size(channels) == k
    assert network.ECA(channels).conv.kernel_size == (k,)


def test_eca_is_a_channel_rescale_without_reduction():
    eca = network.ECA(32)
    x = torch.randn(2, 32, 5, 5)
    g = eca.gate(x)
    assert g.shape == (2, 32, 1, 1)
    assert ((g > 0) & (g < 1)).all()
    assert torch.allclose(eca(x), x * g)


def test_stem_eca_only_in_eca_variants():
    assert not any(isinstance(m, network.ECA) for m in network.build_backbone("mobilenet_v2").modules())
    for v in ("eca_1", "eca_2", "eca_3", "eca_4"):
        feats = network.build_backbone(v).features
        assert isinstance(feats[1], network.ECA), v  # right after the first convolution


def test_rebuilt_blocks_follow_the_documented_readings():
    torch.manual_seed(0)
    x = torch.randn(1, 24, 8, 8)
    b2 = network.ECABlock2(24, 24, 1, 6).eval()
    b3 = network.ECABlock3(24, 24, 1, 6).eval()
    b4 = network.ECABlock4(24, 24, 1, 6).eval()
    b3.load_state_dict(b2.state_dict())
    b4.load_state_dict(b2.state_dict())
    with torch.no_grad():
        ir = network.InvertedResidual.forward(b2, x)
        g = b2.eca.gate(x)
        assert torch.allclose(b2(x), ir * g)
        assert torch.allclose(b3(x), x * g * ir)
        assert torch.allclose(b4(x), torch.sigmoid(x * g * ir))
    # stride-2 blocks stay plain inverted residuals in (b)-(d)
    s2 = network.ECABlock3(24, 32, 2, 6)
    assert s2.eca is None
    # (a) puts ECA after every module, stride 2 included
    assert isinstance(network.ECABlock1(24, 32, 2, 6).eca, network.ECA)


def test_unknown_variant_is_rejected():
    with pytest.raises(ValueError, match="unknown variant"):
        network.build_model("eca_9")
