"""Detection evaluation: VOC07 / VOC / COCO mAP, per-class AP, PR curves and sample plots."""
