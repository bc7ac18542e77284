"""The planted-pattern data set: labels, masks and patterns are what the docs promise."""
import pytest
import torch

from lrp_captum.demos import planted_patterns as G


@pytest.fixture(scope="module")
def data():
    return G.make_planted_patterns(120, size=32, n_classes=4, seed=3)


def test_images_are_rgb_in_unit_range(data):
    assert data.images.shape == (120, 3, 32, 32)
    assert data.images.min() >= 0 and data.images.max() <= 1


def test_classes_are_balanced(data):
    assert torch.bincount(data.labels, minlength=4).tolist() == [30, 30, 30, 30]


def test_every_mask_is_the_seven_by_seven_box_around_the_pattern(data):
    assert (data.masks.sum((1, 2)) == 49).all()
    assert (data.distractor_masks.sum((1, 2)) == 49).all()
    r, c = data.positions[5, 0].tolist()
    assert data.masks[5, r - 1:r + 6, c - 1:c + 6].all()


def test_pattern_and_distractor_do_not_overlap(data):
    assert not (data.masks & data.distractor_masks).any()


def test_pattern_pixels_draw_the_class_shape_in_one_colour(data):
    for i in range(10):
        r, c = data.positions[i, 0].tolist()
        patch = data.images[i, :, r:r + 5, c:c + 5]
        shape = G._shape_tensor(G._SHAPES[G.PATTERNS[data.labels[i]]]).bool()
        colours = patch[:, shape]  # (3, n_stroke_pixels)
        assert torch.allclose(colours, colours[:, :1].expand_as(colours))


def test_distractor_is_the_hollow_square_in_every_class(data):
    shape = G._shape_tensor(G.DISTRACTOR).bool()
    for i in range(8):
        r, c = data.positions[i, 1].tolist()
        colours = data.images[i, :, r:r + 5, c:c + 5][:, shape]
        assert torch.allclose(colours, colours[:, :1].expand_as(colours))


def test_same_seed_gives_the_same_data_and_another_seed_differs():
    a, b = G.make_planted_patterns(8, seed=1), G.make_planted_patterns(8, seed=1)
    assert torch.equal(a.images, b.images) and torch.equal(a.masks, b.masks)
    assert not torch.equal(a.images, G.make_planted_patterns(8, seed=2).images)


def test_mask_fraction_is_the_share_of_masked_pixels(data):
    assert data.mask_fraction == pytest.approx(49 / 1024)


def test_too_many_classes_are_rejected_with_the_limit():
    with pytest.raises(ValueError, match="between 2 and 6"):
        G.make_planted_patterns(4, n_classes=9)


def test_model_rejects_image_size_that_pooling_cannot_cover():
    with pytest.raises(ValueError, match="multiple of 4"):
        G.PlantedPatternCNN(image_size=30)
