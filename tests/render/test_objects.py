"""Detection and segmentation pictures: boxes where they are, each object's map inside its own box only,
mask outlines on the mask's edge, and clear errors for mismatched input."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from gradcam import VisualizeError
from gradcam.render.objects import box_colours, draw_boxes, mask_outline, object_panels, objects_overlay
from gradcam.render.pictures import overlay

PHOTO = Image.fromarray(np.full((60, 80, 3), 100, np.uint8))


def test_boxes_are_drawn_in_their_colours_where_they_are():
    picture = np.asarray(draw_boxes(PHOTO, [[10, 20, 40, 50]], ["cat"], colours=[(255, 0, 0)], width=2))
    assert (picture[35, 10] == (255, 0, 0)).all() and (picture[35, 40] == (255, 0, 0)).all()  # left, right edges
    assert (picture[35, 25] == 100).all()  # inside: the photo
    assert len(set(box_colours(10))) == 10


def test_each_objects_map_is_shown_inside_its_box_only():
    heatmaps = np.zeros((2, 60, 80), np.float32)
    heatmaps[0, 25:45, 15:35] = 1.0
    heatmaps[1] = np.linspace(0, 1, 80)[None, :]
    boxes = [[10, 20, 40, 50], [50, 5, 70, 25]]
    picture = np.asarray(objects_overlay(PHOTO, heatmaps, boxes, ["a", "b"], alpha=0.5))
    first = np.asarray(overlay(PHOTO, heatmaps[0], alpha=0.5))
    second = np.asarray(overlay(PHOTO, heatmaps[1], alpha=0.5))
    assert (picture[35, 25] == first[35, 25]).all() and not (picture[35, 25] == 100).all()
    assert (picture[15, 60] == second[15, 60]).all()
    assert (picture[55, 5] == 100).all()  # outside every box: the photo itself
    panels = object_panels(PHOTO, heatmaps, boxes, ["a", "b"])
    assert panels.width > 2 * PHOTO.width  # the photo with its boxes and one panel per object
    with pytest.raises(VisualizeError, match="need 2 heatmaps"):
        objects_overlay(PHOTO, heatmaps[:1], boxes, ["a", "b"])
    with pytest.raises(VisualizeError, match="one \\[x0, y0, x1, y1\\] box"):
        objects_overlay(PHOTO, heatmaps, [[10, 20, 5, 50], [0, 0, 1, 1]], ["a", "b"])


def test_a_mask_outline_lies_on_the_masks_edge():
    mask = np.zeros((60, 80), bool)
    mask[10:30, 20:50] = True
    picture = np.asarray(mask_outline(PHOTO, mask, colour=(0, 255, 0), width=1))
    assert (picture[10, 30] == (0, 255, 0)).all() and (picture[20, 49] == (0, 255, 0)).all()
    assert (picture[20, 30] == 100).all() and (picture[5, 5] == 100).all()  # inside and outside untouched
    with pytest.raises(VisualizeError, match="mask shape"):
        mask_outline(PHOTO, mask[:10])
