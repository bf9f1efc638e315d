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
from gluoncv.data.transforms.presets.ssd import SSDDefaultTrainTransform, SSDDefaultValTransform


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
        interp = np.random.randint(0, 5) if self._crop_and_colour else 1
        img, bbox = self.resize(img, bbox, interp)
        img, flips = timage.random_flip(img, px=0.5)
        if flips[0]:
            bbox = self.flip_boxes(bbox)
        cls_targets, box_targets = self.targets(bbox)
        return self.normalise(img), cls_targets, box_targets

    def resize(self, img, bbox: np.ndarray, interp: int = 1):
        """``img`` (HWC uint8 NDArray) and its boxes resized to the network's input."""
        h, w, _ = img.shape
        img = timage.imresize(img, self._width, self._height, interp=interp)
        return img, tbbox.resize(bbox, (w, h), (self._width, self._height))

    def flip_boxes(self, bbox: np.ndarray) -> np.ndarray:
        """Boxes of a resized image after its horizontal flip."""
        return tbbox.flip(bbox, (self._width, self._height), flip_x=True)

    def targets(self, bbox: np.ndarray):
        """The SSD (cls_targets (A,), box_targets (A, 4)) of a resized image's boxes."""
        gt_bboxes = mx.nd.array(bbox[np.newaxis, :, :4])
        gt_ids = mx.nd.array(bbox[np.newaxis, :, 4:5])
        cls_targets, box_targets, _ = self._target_generator(self._anchors, None, gt_bboxes, gt_ids)
        return cls_targets[0], box_targets[0]

    def normalise(self, img):
        """HWC (or NHWC) uint8 to the network's normalised float32 CHW (NCHW) input."""
        return normalise(img, self._mean, self._std)


def normalise(img, mean, std):
    """``to_tensor`` then ``normalize``, as GluonCV's SSD transforms end (one image or a
    batch)."""
    return mx.nd.image.normalize(mx.nd.image.to_tensor(img), mean=mean, std=std)


class ValTransform(SSDDefaultValTransform):
    """``SSDDefaultValTransform`` in two steps: :meth:`resize` (deterministic, cacheable)
    and :meth:`finish`."""

    def __call__(self, src, label):
        return self.finish(*self.resize(src, label))

    def resize(self, src, label: np.ndarray):
        """The image (HWC uint8 NDArray) and its boxes resized as GluonCV validates."""
        h, w, _ = src.shape
        img = timage.imresize(src, self._width, self._height, interp=9)
        return img, tbbox.resize(label, in_size=(w, h), out_size=(self._width, self._height))

    def finish(self, img, bbox: np.ndarray):
        """Normalised image and float32 boxes."""
        return self.normalise(img), bbox.astype(np.float32)

    def normalise(self, img):
        """HWC (or NHWC) uint8 to the network's normalised float32 CHW (NCHW) input."""
        return normalise(img, self._mean, self._std)


def train_transform(augmentation: str, image_shape: int, anchors, iou: float):
    """The training transform for an ``augmentation`` hyperparameter value."""
    if augmentation == "ssd":
        return SSDDefaultTrainTransform(image_shape, image_shape, anchors, iou_thresh=iou)
    if augmentation not in ("light", "flip"):
        raise ValueError(f"unknown augmentation {augmentation!r}")
    return _LighterTrainTransform(
        image_shape, image_shape, anchors, iou_thresh=iou, crop_and_colour=augmentation == "light"
    )
