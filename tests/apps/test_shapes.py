"""The synthetic data sets' known answers are where the objects are."""

from __future__ import annotations

import numpy as np

from gradcam.apps.synthetic.shapes import draw_shapes, make_clips


def test_two_object_shapes_have_one_circle_one_square_apart_with_masks_in_their_boxes():
    images, labels, boxes, masks = draw_shapes(6, size=64, seed=2, objects=2)
    assert images.shape == (6, 64, 64, 3) and labels.shape == (6, 2) and masks.shape == (6, 2, 64, 64)
    assert (np.sort(labels, axis=1) == [0, 1]).all()
    for box, mask in zip(boxes.reshape(-1, 4), masks.reshape(-1, 64, 64)):
        ys, xs = np.nonzero(mask)
        assert xs.min() >= box[0] and xs.max() <= box[2] and ys.min() >= box[1] and ys.max() <= box[3]
    for (a, b) in boxes:
        assert a[0] > b[2] or b[0] > a[2] or a[1] > b[3] or b[1] > a[3]  # never touching
    fill = masks.sum(axis=(2, 3)) / ((boxes[..., 2] - boxes[..., 0] + 1) * (boxes[..., 3] - boxes[..., 1] + 1))
    assert (fill[labels == 1] > 0.95).all() and (fill[labels == 0] < 0.85).all()  # squares fill their box, discs π/4


def test_clips_move_their_shape_through_its_boxes():
    clips, labels, boxes = make_clips(4, frames=6, size=32, seed=1)
    assert clips.shape == (4, 1, 6, 32, 32) and labels.tolist() == [0, 1, 0, 1]
    for clip, frames in zip(clips[:, 0], boxes):
        for frame, (x0, y0, x1, y1) in zip(clip, frames):
            assert frame[y0:y1 + 1, x0:x1 + 1].mean() > frame.mean() + 0.3
    again = make_clips(4, frames=6, size=32, seed=1)
    assert np.array_equal(clips, again[0]) and np.array_equal(boxes, again[2])
