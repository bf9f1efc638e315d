"""Training transforms: GluonCV's SSD augmentation at three strengths, SSD targets computed
in the data workers.

``ssd`` is ``SSDDefaultTrainTransform`` itself (colour distortion, zoom-out expansion up to
4x with probability 0.5, an IoU-constrained random crop, random interpolation, flip). The
expansion shrinks objects to a quarter of their size on half the images: right for large
pretrained networks on natural images, slow for a small network learning from scratch.
``light`` keeps everything but the expansion; ``flip`` only resizes and flips.
"""

from __future__ import annotations

import mxnet as mx
import numpy as np
from gluoncv.data.transforms import bbox as tbbox
from gluoncv.data.transforms import experimental
from gluoncv.data.transforms import image as timage
from gluoncv.data.transforms.presets.ssd import SSDDefaultTrainTransform


class _LighterTrainTransform(SSDDefaultTrainTransform):
    """``SSDDefaultTrainTransform`` without zoom-out (``light``) or with only a flip."""

    def __init__(self, *args, crop_and_colour: bool, **kwargs):
        super().__init__(*args, **kwargs)
        self._crop_and_colour = crop_and_colour

    def __call__(self, src, label):
        img, bbox = src, label
        if self._crop_and_colour:
            img = experimental.image.random_color_distort(img)
            h, w, _ = img.shape
            bbox, (x0, y0, cw, ch) = experimental.bbox.random_crop_with_constraints(bbox, (w, h))
            img = mx.image.fixed_crop(img, x0, y0, cw, ch)
        h, w, _ = img.shape
        interp = np.random.randint(0, 5) if self._crop_and_colour else 1
        img = timage.imresize(img, self._width, self._height, interp=interp)
        bbox = tbbox.resize(bbox, (w, h), (self._width, self._height))
        img, flips = timage.random_flip(img, px=0.5)
        bbox = tbbox.flip(bbox, (self._width, self._height), flip_x=flips[0])
        img = mx.nd.image.normalize(mx.nd.image.to_tensor(img), mean=self._mean, std=self._std)
        gt_bboxes = mx.nd.array(bbox[np.newaxis, :, :4])
        gt_ids = mx.nd.array(bbox[np.newaxis, :, 4:5])
        cls_targets, box_targets, _ = self._target_generator(self._anchors, None, gt_bboxes, gt_ids)
        return img, cls_targets[0], box_targets[0]


def train_transform(augmentation: str, image_shape: int, anchors, iou: float):
    """The training transform for an ``augmentation`` hyperparameter value."""
    if augmentation == "ssd":
        return SSDDefaultTrainTransform(image_shape, image_shape, anchors, iou_thresh=iou)
    if augmentation not in ("light", "flip"):
        raise ValueError(f"unknown augmentation {augmentation!r}")
    return _LighterTrainTransform(
        image_shape, image_shape, anchors, iou_thresh=iou, crop_and_colour=augmentation == "light"
    )
