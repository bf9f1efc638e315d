"""Importers into the SageMaker image+JSON layout: Pascal VOC XML and COCO instances JSON."""

from __future__ import annotations

from .coco import import_coco
from .voc import import_voc

__all__ = ["import_coco", "import_voc"]
