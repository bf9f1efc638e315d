"""One channel of an image+JSON dataset read through the gate: annotation JSONs confined to
``<channel>_annotation/``, the images they name confined to ``<channel>/``."""

from __future__ import annotations

import os
from collections.abc import Iterator

from ..annotations import AnnotationError, ImageAnnotation, annotation_channel, load_json
from .paths import Confined
from .rules import GateError


def refusal(exc: AnnotationError) -> GateError:
    """An annotation error as a refusal carrying its rule code."""
    return GateError(exc.rule, str(exc))


def parse_annotation(raw: bytes, source: str) -> ImageAnnotation:
    """One annotation JSON parsed strictly; raises :class:`GateError` with the rule code."""
    try:
        return ImageAnnotation.from_json(load_json(raw, source), source)
    except AnnotationError as exc:
        raise refusal(exc) from None


class Channel:
    """``<root>/<channel>/`` and ``<root>/<channel>_annotation/``, confined."""

    def __init__(self, root: str | os.PathLike, channel: str):
        self.channel = channel
        self.ann_dir = annotation_channel(channel)
        self.images = Confined(os.path.join(root, channel), f"{channel}/")
        self.annotations = Confined(os.path.join(root, self.ann_dir), f"{self.ann_dir}/")
        dataset = Confined(root, "the dataset")
        for folder in (self.images, self.annotations):
            if os.path.lexists(folder.root) and not dataset.contains(folder.root):
                name = os.path.basename(folder.root)
                raise GateError(
                    "pairing.path_escape",
                    f"{name}/ is a symlink to a folder outside the dataset; a channel folder "
                    "must be inside the dataset folder itself",
                )

    def json_names(self) -> list[str]:
        """Names of the ``.json`` entries of the annotation folder, sorted (anything that is
        not a folder: a FIFO or an escaping symlink is refused when read, not skipped)."""
        try:
            with os.scandir(self.annotations.root) as it:
                return sorted(e.name for e in it if e.name.endswith(".json") and not e.is_dir())
        except FileNotFoundError:
            return []

    def source(self, json_name: str) -> str:
        return f"{self.ann_dir}/{json_name}"

    def read_annotation(self, json_name: str) -> ImageAnnotation:
        """Parse one annotation JSON of the channel; raises :class:`GateError`."""
        source = self.source(json_name)
        return parse_annotation(self.annotations.read(json_name, source, "annotation"), source)

    def image_path(self, ann: ImageAnnotation, source: str) -> str:
        """The real path of the image an annotation names (it need not exist yet)."""
        return self.images.resolve(ann.file, source)

    def read_image(self, ann: ImageAnnotation, source: str) -> bytes:
        """The image bytes an annotation names; ``FileNotFoundError`` when it is missing."""
        return self.images.read(ann.file, source)

    def __iter__(self) -> Iterator[tuple[str, ImageAnnotation]]:
        """``(json source, annotation)`` for every JSON, in name order."""
        for name in self.json_names():
            yield self.source(name), self.read_annotation(name)
