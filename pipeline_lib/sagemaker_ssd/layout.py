"""Where SageMaker's SSD takes its features and how it lays its anchors, per base network
and input size (MXNet ``example/ssd``'s ``symbol_factory.get_config``). No MXNet here.

Both bases take features from two layers of the base network and stack 3x3 convolutions on
the last one (``multi_feat_K``); each feature layer gets a location and a class predictor and
``MultiBoxPrior`` anchors of its ``sizes`` (fractions of the input) and ``ratios``.
``vgg-16`` L2-normalises ``relu4_3`` (a learned scale, initialised to 20) and uses a seventh
feature layer from 448 pixels on; its anchor ``steps`` are fixed only at exactly 300 and
512, elsewhere (and always for ``resnet-50``) they follow the feature maps.
"""

from __future__ import annotations

from dataclasses import dataclass

#: SageMaker's base_network names -> example/ssd's network names
BASES = {"vgg-16": "vgg16_reduced", "resnet-50": "resnet50"}
MEAN_PIXELS = (123.0, 117.0, 104.0)  # RGB, subtracted from the input (example/ssd's default)
VARIANCES = (0.1, 0.1, 0.2, 0.2)  # box encoding of MultiBoxTarget / MultiBoxDetection
NMS_TOPK = 400  # example/ssd's nms_topk

_RATIOS_4 = [1, 2, 0.5]
_RATIOS_6 = [1, 2, 0.5, 3, 1.0 / 3]


@dataclass(frozen=True)
class Layout:
    """One network's feature layers and anchors (example/ssd's configuration names)."""

    base: str  # SageMaker's base_network
    from_layers: tuple[str, ...]  # base-network layers, "" for an added layer
    num_filters: tuple[int, ...]  # added layers' filters (-1: a base layer's own)
    strides: tuple[int, ...]
    pads: tuple[int, ...]
    sizes: tuple[tuple[float, ...], ...]
    ratios: tuple[tuple[float, ...], ...]
    normalizations: tuple[int, ...]  # L2-normalisation scale per layer, -1 for none
    steps: tuple[float, ...]  # per layer, fractions of the input; () to follow the maps

    @property
    def anchors_per_position(self) -> tuple[int, ...]:
        """Anchors at each position of each feature layer (sizes - 1 + ratios)."""
        return tuple(len(s) - 1 + len(r) for s, r in zip(self.sizes, self.ratios, strict=True))


def layout_for(base: str, image_shape: int) -> Layout:
    """The layout of SageMaker's SSD on ``base`` (``vgg-16`` or ``resnet-50``) at
    ``image_shape``; ``ValueError`` for another base network."""
    if base == "vgg-16":
        if image_shape >= 448:
            return Layout(
                base,
                ("relu4_3", "relu7", "", "", "", "", ""),
                (512, -1, 512, 256, 256, 256, 256),
                (-1, -1, 2, 2, 2, 2, 1),
                (-1, -1, 1, 1, 1, 1, 1),
                (
                    (0.07, 0.1025),
                    (0.15, 0.2121),
                    (0.3, 0.3674),
                    (0.45, 0.5196),
                    (0.6, 0.6708),
                    (0.75, 0.8216),
                    (0.9, 0.9721),
                ),
                tuple(map(tuple, [_RATIOS_4] + [_RATIOS_6] * 4 + [_RATIOS_4] * 2)),
                (20, -1, -1, -1, -1, -1, -1),
                tuple(x / 512.0 for x in (8, 16, 32, 64, 128, 256, 512))
                if image_shape == 512
                else (),
            )
        return Layout(
            base,
            ("relu4_3", "relu7", "", "", "", ""),
            (512, -1, 512, 256, 256, 256),
            (-1, -1, 2, 2, 1, 1),
            (-1, -1, 1, 1, 0, 0),
            _SIZES_6,
            _RATIOS_BY_LAYER_6,
            (20, -1, -1, -1, -1, -1),
            tuple(x / 300.0 for x in (8, 16, 32, 64, 100, 300)) if image_shape == 300 else (),
        )
    if base == "resnet-50":
        return Layout(
            base,
            ("_plus12", "_plus15", "", "", "", ""),
            (-1, -1, 512, 256, 256, 128),
            (-1, -1, 2, 2, 2, 2),
            (-1, -1, 1, 1, 1, 1),
            _SIZES_6,
            _RATIOS_BY_LAYER_6,
            (-1, -1, -1, -1, -1, -1),
            (),
        )
    raise ValueError(
        f"SageMaker's SSD has no base network {base!r}: expected one of {', '.join(BASES)}"
    )


_SIZES_6 = (
    (0.1, 0.141),
    (0.2, 0.272),
    (0.37, 0.447),
    (0.54, 0.619),
    (0.71, 0.79),
    (0.88, 0.961),
)
_RATIOS_BY_LAYER_6 = tuple(map(tuple, [_RATIOS_4] + [_RATIOS_6] * 3 + [_RATIOS_4] * 2))
