"""Every named input rule, with its stable error code and default severity, and the error
that refuses input by rule (:class:`GateError`).

Codes are grouped by what they look at: ``L`` layout and pairing, ``J`` annotation JSON,
``I`` images, ``B`` boxes, ``C`` class ids and categories, ``D`` dataset level, ``M``
augmented manifests, ``R`` RecordIO, ``G`` Great Expectations. A code never changes meaning;
new rules get new codes.
"""

from __future__ import annotations

from dataclasses import dataclass

ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True)
class Rule:
    """One named check."""

    name: str
    code: str
    severity: str
    description: str


_RULES = [
    # layout and pairing
    Rule("layout.missing_channel", "L001", ERROR, "a required channel folder is missing or empty"),
    Rule("layout.stray_file", "L002", WARNING, "a file that is neither an image nor a JSON"),
    Rule("pairing.missing_annotation", "L003", ERROR, "an image has no JSON with its base name"),
    Rule("pairing.missing_image", "L004", ERROR, "the JSON's `file` does not exist"),
    Rule("pairing.path_escape", "L005", ERROR, "`file` leaves the channel root"),
    Rule("pairing.name_mismatch", "L006", ERROR, "JSON and image base names differ"),
    Rule("pairing.duplicate_reference", "L007", ERROR, "two JSONs name the same image"),
    Rule("path.not_regular_file", "L008", ERROR, "a FIFO, device, socket or folder, not a file"),
    Rule("pairing.unusable_name", "L009", ERROR, "`file` holds a control character (newline)"),
    # annotation JSON
    Rule("json.malformed", "J001", ERROR, "not valid UTF-8 JSON"),
    Rule("json.schema", "J002", ERROR, "a required field is missing or has the wrong type"),
    Rule("json.unknown_field", "J003", WARNING, "a field the format does not define"),
    Rule("json.duplicate_key", "J004", ERROR, "an object names the same key twice"),
    # images
    Rule("image.decode", "I001", ERROR, "the image cannot be read"),
    Rule("image.truncated", "I002", ERROR, "the image file ends early (no end marker)"),
    Rule("image.format", "I003", ERROR, "not a JPEG or PNG"),
    Rule("image.channels", "I004", ERROR, "not an 8-bit, 3-channel image"),
    Rule("image.size_mismatch", "I005", ERROR, "`image_size` differs from the real image"),
    Rule("image.exif_orientation", "I006", WARNING, "EXIF orientation makes decoders disagree"),
    Rule("image.too_large", "I007", ERROR, "pixel count above the limit (decompression bomb)"),
    Rule("image.empty", "I008", ERROR, "an image with no boxes (empty-image policy: reject)"),
    Rule("image.duplicate", "I009", WARNING, "the same image bytes appear twice in a channel"),
    # boxes
    Rule("box.non_finite", "B001", ERROR, "a box coordinate is NaN or infinite"),
    Rule("box.non_positive", "B002", ERROR, "box width or height is not positive"),
    Rule("box.out_of_bounds", "B003", ERROR, "the box leaves the image (beyond the tolerance)"),
    Rule("box.duplicate", "B004", WARNING, "the same box appears twice in one image"),
    Rule("box.tiny", "B005", WARNING, "box width or height below the minimum box size"),
    # classes
    Rule("class.not_contiguous", "C001", ERROR, "class ids are not 0..K-1 without gaps"),
    Rule("class.categories_inconsistent", "C002", ERROR, "`categories` disagree"),
    Rule("class.unnamed", "C003", ERROR, "a used class id has no name in `categories`"),
    Rule("class.unused_category", "C004", WARNING, "a category that no box uses"),
    Rule("class.validation_only", "C005", WARNING, "a class in validation that train never has"),
    Rule("class.id_too_large", "C006", ERROR, "a class id above the supported maximum"),
    # dataset
    Rule("dataset.train_validation_overlap", "D001", ERROR, "the same image in train and val"),
    # augmented manifest
    Rule("manifest.malformed_line", "M001", ERROR, "a line that is not a JSON object"),
    Rule("manifest.source_ref", "M002", ERROR, "`source-ref` missing or not a string"),
    Rule("manifest.label_attribute", "M003", ERROR, "the label attribute is missing or misplaced"),
    Rule("manifest.video", "M004", ERROR, "a video-frame manifest (not supported)"),
    Rule("manifest.class_map", "M005", ERROR, "`-metadata.class-map` is malformed"),
    # RecordIO
    Rule("recordio.magic", "R001", ERROR, "a record does not start with the RecordIO magic"),
    Rule("recordio.header", "R002", ERROR, "a record header or length is invalid"),
    Rule("recordio.label", "R003", ERROR, "the detection label layout is invalid"),
    Rule("recordio.index", "R004", ERROR, "the .idx does not match the records"),
    Rule("recordio.no_index", "R005", WARNING, "no .idx beside the .rec (it will be rebuilt)"),
    # Great Expectations
    Rule("gx.expectation_failed", "G001", ERROR, "a Great Expectations expectation failed"),
]

RULES: dict[str, Rule] = {r.name: r for r in _RULES}
assert len({r.code for r in _RULES}) == len(_RULES), "duplicate rule codes"  # noqa: S101  an invariant of the table, checked at import


class GateError(ValueError):
    """Input refused by a named rule: one line ending in the rule's code and name."""

    def __init__(self, rule: str, message: str):
        self.rule = rule
        self.code = RULES[rule].code
        self.detail = message
        super().__init__(f"{message} [{self.code} {rule}]")
