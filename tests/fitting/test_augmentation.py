"""Batched augmentation: shapes, ranges, the identity at zero strength, seeded determinism."""

from __future__ import annotations

import torch

from pneumoscan.fitting.augmentation import (
    AugmentConfig,
    augment_batch,
    gaussian_blur,
    reencoded,
)

OFF = AugmentConfig(rotate_degrees=0, scale=0, aspect=0, translate=0, brightness=0,
                    contrast=0, gamma=0, blur_sharpen=0, noise=0)


def _batch(n: int = 6, size: int = 24) -> torch.Tensor:
    return torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(0))


def test_output_shape_and_range() -> None:
    images = _batch()
    out = augment_batch(images, AugmentConfig(), torch.Generator().manual_seed(1))
    assert out.shape == images.shape and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1
    assert not torch.allclose(out, images, atol=1e-3)


def test_zero_strength_is_the_identity() -> None:
    images = _batch()
    out = augment_batch(images, OFF, torch.Generator().manual_seed(1))
    torch.testing.assert_close(out, images.clamp_min(1e-6), atol=1e-5, rtol=0)


def test_same_seed_same_batch_other_seed_other_batch() -> None:
    images = _batch()
    first = augment_batch(images, AugmentConfig(), torch.Generator().manual_seed(7))
    again = augment_batch(images, AugmentConfig(), torch.Generator().manual_seed(7))
    other = augment_batch(images, AugmentConfig(), torch.Generator().manual_seed(8))
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)


def test_brightness_alone_shifts_by_at_most_its_range() -> None:
    images = torch.full((16, 1, 8, 8), 0.5)
    config = AugmentConfig(**{**OFF.__dict__, "brightness": 0.1})
    out = augment_batch(images, config, torch.Generator().manual_seed(0))
    shift = out.mean(dim=(1, 2, 3)) - 0.5
    assert shift.abs().max() <= 0.1 + 1e-6
    assert shift.std() > 0.02  # images get different shifts
    assert torch.allclose(out, out[:, :, :1, :1].expand_as(out))  # uniform within an image


def test_no_horizontal_flip_unless_asked() -> None:
    images = torch.zeros(8, 1, 16, 16)
    images[..., :8] = 1.0  # left half bright
    kept = augment_batch(images, OFF, torch.Generator().manual_seed(0))
    assert torch.all(kept[..., :8].mean(dim=(1, 2, 3)) > 0.99)
    flipping = AugmentConfig(**{**OFF.__dict__, "hflip": True})
    out = augment_batch(images, flipping, torch.Generator().manual_seed(0))
    mirrored = [bool(torch.allclose(o, torch.flip(i, dims=[2]), atol=1e-5))
                for o, i in zip(out, images, strict=True)]
    unchanged = [bool(torch.allclose(o, i.clamp_min(1e-6), atol=1e-5))
                 for o, i in zip(out, images, strict=True)]
    assert all(m != u for m, u in zip(mirrored, unchanged, strict=True))  # one or the other
    assert any(mirrored) and any(unchanged)


def test_gaussian_blur_per_image_sigma() -> None:
    images = _batch(n=3, size=32)
    out = gaussian_blur(images, torch.tensor([0.0, 1.0, 2.5]))
    assert out.shape == images.shape
    torch.testing.assert_close(out[0], images[0])  # sigma 0: unchanged

    def roughness(x: torch.Tensor) -> float:
        return float((x[..., 1:, :] - x[..., :-1, :]).abs().mean())

    assert roughness(images[1]) > roughness(out[1]) > roughness(out[2].unsqueeze(0))
    torch.testing.assert_close(out.mean(dim=(1, 2, 3)), images.mean(dim=(1, 2, 3)),
                               atol=0.02, rtol=0)  # blurring keeps the mean


def test_blur_sigma_blurs_only_when_asked() -> None:
    images = _batch()
    blurring = AugmentConfig(**{**OFF.__dict__, "blur_sigma": 2.0})
    out = augment_batch(images, blurring, torch.Generator().manual_seed(0))
    sharp = (images[..., 1:, :] - images[..., :-1, :]).abs().mean()
    assert (out[..., 1:, :] - out[..., :-1, :]).abs().mean() < sharp


def test_pad_fill_puts_a_constant_grey_where_a_zoom_out_uncovers() -> None:
    images = torch.full((8, 1, 32, 32), 0.5)
    zooming = AugmentConfig(**{**OFF.__dict__, "scale": 0.5, "pad_fill": 1.0})
    out = augment_batch(images, zooming, torch.Generator().manual_seed(2))
    replicated = augment_batch(images, AugmentConfig(**{**OFF.__dict__, "scale": 0.5}),
                               torch.Generator().manual_seed(2))
    assert torch.allclose(replicated, torch.full_like(replicated, 0.5), atol=1e-5)
    corners = out[:, 0, 0, 0]
    # images shrunk (zoom < 1) get a constant border, black, white or a grey in between
    assert ((corners - 0.5).abs() > 0.05).any()
    assert torch.allclose(out[:, 0, 16, 16], torch.full((8,), 0.5), atol=1e-4)  # centre kept


def test_annotations_and_borders_on_a_share_of_images_and_seeded() -> None:
    images = torch.full((40, 1, 48, 48), 0.5)
    marking = AugmentConfig(**{**OFF.__dict__, "annotate": 0.5, "border": 0.3})
    out = augment_batch(images, marking, torch.Generator().manual_seed(3))
    again = augment_batch(images, marking, torch.Generator().manual_seed(3))
    assert torch.equal(out, again)
    changed = (out - 0.5).abs().amax(dim=(1, 2, 3)) > 0.2
    assert 10 < int(changed.sum()) < 40  # some images marked, some left alone
    centre = out[:, :, 20:28, 20:28]
    assert torch.allclose(centre, torch.full_like(centre, 0.5), atol=1e-5)  # lungs untouched


def test_resample_changes_detail_not_the_picture() -> None:
    images = _batch(8, 48)
    config = AugmentConfig(rotate_degrees=0, scale=0, aspect=0, translate=0, brightness=0,
                           contrast=0, gamma=0, blur_sharpen=0, noise=0, resample=1.0)
    out = augment_batch(images, config, torch.Generator().manual_seed(0))
    assert out.shape == images.shape and float(out.min()) >= 0 and float(out.max()) <= 1
    changed = (out - images).abs().mean(dim=(1, 2, 3))
    assert bool((changed > 0).all())  # every image went through a smaller size
    assert float((out.mean(dim=(1, 2, 3)) - images.mean(dim=(1, 2, 3))).abs().max()) < 0.02


def test_jpeg_re_encodes_a_share_of_images_seeded() -> None:
    images = _batch(16, 32)
    config = AugmentConfig(rotate_degrees=0, scale=0, aspect=0, translate=0, brightness=0,
                           contrast=0, gamma=0, blur_sharpen=0, noise=0, jpeg=0.5)
    out = augment_batch(images, config, torch.Generator().manual_seed(3))
    touched = (out - images).abs().amax(dim=(1, 2, 3)) > 1 / 255
    assert 0 < int(touched.sum()) < 16  # about half
    again = augment_batch(images, config, torch.Generator().manual_seed(3))
    torch.testing.assert_close(out, again)
    # JPEG keeps the picture: the mean error of a re-encoded image is small
    assert float((out - images)[touched].abs().mean()) < 0.25


def test_a_re_encoded_copy_keeps_the_picture_and_changes_the_detail() -> None:
    images = _batch(16, 48)
    copy = reencoded(images, torch.Generator().manual_seed(0))
    assert copy.shape == images.shape and float(copy.min()) >= 0 and float(copy.max()) <= 1
    assert bool(((copy - images).abs().mean(dim=(1, 2, 3)) > 0).all())  # every image
    assert float((copy.mean(dim=(1, 2, 3)) - images.mean(dim=(1, 2, 3))).abs().max()) < 0.02
    torch.testing.assert_close(copy, reencoded(images, torch.Generator().manual_seed(0)))
