"""A generator of hostile inputs for every ``odp`` entry point (issue 11's five classes).

Each :class:`Case` builds one hostile input into a :class:`Workspace` (a valid base dataset,
a valid model, a manifest, VOC and COCO sources, detection files, all copied in first), says
which entry points it targets and what must happen. Outside the inputs, ``outside/`` holds a
marker: ``secret.jpg``, a valid JPEG whose comment segment carries unique bytes, and JSON
naming a class after them. Cases that point a path at it succeed in confining the read only
if those bytes never show up in any output.

Issue classes: ``outside`` (reading outside the dataset), ``exhaust`` (exhausting a worker),
``wrong`` (wrong results with exit 0), ``leftover`` (scratch, ``.part``, workers left behind),
``traceback`` (tracebacks and mislabelled errors), ``dataloss`` (an output that would replace
what the user already has; every case also checks that nothing that existed is deleted). What must happen, for every case: exit
1 or 2, one last stderr line naming the input (one of ``Case.names``' strings), no traceback,
no marker in any output, nothing left behind, within the memory and time bounds;
``refuse_or_warn`` cases may also exit 0 when the output warns about the named input.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import stat
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dataset_defects import inject
from PIL import Image

from pipeline_lib.annotations import annotation_channel

# Entry points (the argv each one gets is built by the test from the workspace).
VALIDATE = "validate"
CONVERT_RECORDIO = "convert recordio"
CONVERT_MANIFEST = "convert manifest"
CONVERT_JSON = "convert json"
IMPORT_VOC = "import voc"
IMPORT_COCO = "import coco"
TRAIN = "train"
EVALUATE = "evaluate"
MAP = "map"
PREDICT = "predict"
REGISTER = "register"

# Issue classes.
OUTSIDE, EXHAUST, WRONG, LEFTOVER, TRACEBACK, DATALOSS = (
    "outside",
    "exhaust",
    "wrong",
    "leftover",
    "traceback",
    "dataloss",
)

DATASET_READERS = (VALIDATE, CONVERT_RECORDIO, CONVERT_MANIFEST, TRAIN, EVALUATE)
IMAGE_READERS = (VALIDATE, CONVERT_RECORDIO, TRAIN, EVALUATE)  # what decodes pixels
JSON_READERS = (VALIDATE, CONVERT_RECORDIO, CONVERT_MANIFEST, TRAIN, EVALUATE, MAP)
MODEL_READERS = (EVALUATE, PREDICT, REGISTER)
# Entry points with an OUTPUT (predict: its optional OUTPUT folder).
WRITERS = (
    VALIDATE, CONVERT_RECORDIO, CONVERT_MANIFEST, CONVERT_JSON, IMPORT_VOC, IMPORT_COCO,
    EVALUATE, PREDICT,
)  # fmt: skip

SECRET_SIZE = (32, 24)  # width, height of outside/secret.jpg


class CaseUnavailable(Exception):
    """This machine cannot build the case (e.g. no permission to create a device file)."""


@dataclass
class Workspace:
    """Everything an entry point reads and writes for one case, under ``root``."""

    root: Path
    marker: bytes
    model: Path  # model.tar.gz for evaluate/predict/register
    hp_over: dict = field(default_factory=dict)  # hyperparameters over the tiny job's
    hp_text: str | None = None  # a raw hyperparameters.json instead
    hp_fifo: bool = False  # hyperparameters.json is a FIFO
    model_channel: Path | None = None  # train's `model` channel (incremental training)
    image: Path | None = None  # predict's input (default: a dataset image)
    env: dict[str, str] = field(default_factory=dict)  # extra environment of the command
    must_not_exist: list[Path] = field(default_factory=list)  # paths nothing may create
    out_dir: Path | None = None  # where outputs go (default: root/out)
    extra_args: list[str] = field(default_factory=list)  # appended to every command's argv
    predict_output: Path | None = None  # odp predict's OUTPUT folder (default: stdout)

    @property
    def dataset(self) -> Path:
        return self.root / "dataset"

    @property
    def outside(self) -> Path:
        return self.root / "outside"

    @property
    def secret(self) -> Path:
        return self.outside / "secret.jpg"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.jsonl"

    @property
    def voc(self) -> Path:
        return self.root / "voc"

    @property
    def coco_json(self) -> Path:
        return self.root / "coco" / "instances_train.json"

    @property
    def detections(self) -> Path:
        return self.root / "dets"

    @property
    def out(self) -> Path:
        """The folder every output goes under."""
        return self.out_dir or self.root / "out"


@dataclass(frozen=True)
class Case:
    """One hostile input: its issue class, the entry points it targets, how to build it."""

    name: str
    issue: str
    targets: tuple[str, ...]
    build: Callable[[Workspace], tuple[str, ...]]  # returns the names the message may cite
    outcome: str = "refuse"  # or "refuse_or_warn"
    doc: str = ""


# ------------------------------------------------------------------ bytes


def secret_jpeg(marker: bytes) -> bytes:
    """A valid ``SECRET_SIZE`` JPEG carrying ``marker`` in a comment (COM) segment."""
    buf = io.BytesIO()
    Image.new("RGB", SECRET_SIZE, (200, 30, 30)).save(buf, format="JPEG", quality=90)
    data = buf.getvalue()
    com = b"\xff\xfe" + (len(marker) + 2).to_bytes(2, "big") + marker
    return data[:2] + com + data[2:]


def png_header_bomb(width: int, height: int) -> bytes:
    """A few hundred bytes of PNG whose header claims ``width x height`` RGB pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data).to_bytes(4, "big")
        return len(data).to_bytes(4, "big") + kind + data + crc

    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    idat = zlib.compress(b"\x00" * 4096)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _zeros_deflate(total: int, block: int = 1 << 20) -> tuple[bytes, int]:
    """``(piece, count)``: ``piece`` repeated ``count`` times is raw deflate of ``total`` zero
    bytes (one fully flushed block, about 1 KB per MB: a 3 GiB member takes milliseconds)."""
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    piece = comp.compress(b"\0" * block) + comp.flush(zlib.Z_FULL_FLUSH)
    return piece, total // block


def tar_bomb(path: Path, member: str, size: int) -> None:
    """A ``model.tar.gz`` whose one member really expands to ``size`` zero bytes (a few MB
    on disk): tar header, the zeros, all in one gzip stream with a wrong trailer."""
    info = tarfile.TarInfo(member)
    info.size = size
    header = info.tobuf(format=tarfile.GNU_FORMAT)
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = comp.compress(header) + comp.flush(zlib.Z_FULL_FLUSH)
    piece, count = _zeros_deflate(size)
    tail = comp.compress(b"\0" * 1024) + comp.flush(zlib.Z_FINISH)  # end-of-archive blocks
    with open(path, "wb") as f:
        f.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff")  # gzip header, no name
        f.write(head)
        for _ in range(count):
            f.write(piece)
        f.write(tail)
        f.write((0).to_bytes(4, "little") + (size % (1 << 32)).to_bytes(4, "little"))


def tar_declaring(path: Path, member: str, size: int) -> None:
    """A small ``model.tar.gz`` whose member's header declares ``size`` bytes it lacks."""
    info = tarfile.TarInfo(member)
    info.size = size
    with gzip.open(path, "wb") as f:
        f.write(info.tobuf(format=tarfile.GNU_FORMAT) + b"\0" * 4096)


def tar_of(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)


def _file_member(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _link_member(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tuple:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


# ------------------------------------------------------------------ dataset helpers


def first_json(ws: Workspace, channel: str) -> tuple[Path, dict]:
    path = sorted((ws.dataset / annotation_channel(channel)).glob("*.json"))[0]
    return path, json.loads(path.read_text())


def _stems(ws: Workspace, channels: tuple[str, ...] = ("train", "validation")) -> tuple[str, ...]:
    return tuple(first_json(ws, ch)[0].stem for ch in channels)


def _each(ws: Workspace, fn: Callable[[Path, dict, str], None]) -> tuple[str, ...]:
    """Apply ``fn(json_path, ann, channel)`` to the first record of both channels."""
    names = _stems(ws)
    for channel in ("train", "validation"):
        fn(*first_json(ws, channel), channel)
    return names


def _point_at_secret(ws: Workspace, json_path: Path, ann: dict, file: str) -> None:
    (
        json_path.parent.parent / json_path.parent.name.removesuffix("_annotation") / ann["file"]
    ).unlink()
    w, h = SECRET_SIZE
    ann.update(
        file=file,
        image_size=[{"width": w, "height": h, "depth": 3}],
        annotations=[{"class_id": 0, "left": 2, "top": 2, "width": 10, "height": 10}],
    )
    json_path.write_text(json.dumps(ann))


def _image_of(ws: Workspace, channel: str, ann: dict) -> Path:
    return ws.dataset / channel / ann["file"]


def _set_image(ws: Workspace, channel: str, json_path: Path, ann: dict, data: bytes) -> None:
    """Replace a record's image bytes, keeping the JSON's size in step."""
    path = _image_of(ws, channel, ann)
    path.write_bytes(data)
    im = Image.open(io.BytesIO(data))
    ann["image_size"] = [{"width": im.width, "height": im.height, "depth": 3}]
    ann["annotations"] = [{"class_id": 0, "left": 1, "top": 1, "width": 8, "height": 8}]
    json_path.write_text(json.dumps(ann))


def _with_json_text(ws: Workspace, make: Callable[[dict], str]) -> tuple[str, ...]:
    return _each(ws, lambda p, ann, _ch: p.write_text(make(ann)))


# ------------------------------------------------------------------ outside the dataset


def _absolute_file(ws: Workspace) -> tuple[str, ...]:
    return _each(ws, lambda p, ann, _ch: _point_at_secret(ws, p, ann, str(ws.secret)))


def _dotdot_file(ws: Workspace) -> tuple[str, ...]:
    def go(p: Path, ann: dict, ch: str) -> None:
        _point_at_secret(ws, p, ann, os.path.relpath(ws.secret, ws.dataset / ch))

    return _each(ws, go)


def _symlinked_image(ws: Workspace) -> tuple[str, ...]:
    def go(p: Path, ann: dict, ch: str) -> None:
        _point_at_secret(ws, p, ann, ann["file"])
        (ws.dataset / ch / ann["file"]).symlink_to(ws.secret)

    return _each(ws, go)


def _symlinked_annotation(ws: Workspace) -> tuple[str, ...]:
    def go(p: Path, ann: dict, ch: str) -> None:
        ann["categories"] = [
            {"class_id": 0, "name": ws.marker.decode()},
            {"class_id": 1, "name": "b"},
        ]
        outside = ws.outside / f"{ch}.json"
        outside.write_text(json.dumps(ann))
        p.unlink()
        p.symlink_to(outside)

    return _each(ws, go)


def _symlinked_channel(ws: Workspace) -> tuple[str, ...]:
    for ch in ("train", "validation"):
        p, ann = first_json(ws, ch)
        _set_image(ws, ch, p, ann, ws.secret.read_bytes())
        shutil.move(ws.dataset / ch, ws.outside / ch)
        (ws.dataset / ch).symlink_to(ws.outside / ch, target_is_directory=True)
    return ("train", "validation")


def _extracted_model(ws: Workspace) -> Path:
    """The base model.tar.gz extracted into ``model-dir/`` (a model folder, as a model
    channel or as MODEL)."""
    folder = ws.root / "model-dir"
    with tarfile.open(ws.root / "model.tar.gz") as tar:
        tar.extractall(folder, filter="data")
    return folder


def _model_files_symlinked_out(ws: Workspace) -> tuple[str, ...]:
    """A model folder's hyperparams.json and class_map.json link to files outside it that
    carry the marker: train (model channel), evaluate and predict (MODEL folder)."""
    folder = _extracted_model(ws)
    secret = {"image_shape": ws.marker.decode(), ws.marker.decode(): "x"}
    for name, body in (("hyperparams.json", secret), ("class_map.json", {"0": ws.marker.decode()})):
        (ws.outside / name).write_text(json.dumps(body))
        (folder / name).unlink()
        (folder / name).symlink_to(ws.outside / name)
    ws.model = ws.model_channel = folder
    return ("hyperparams.json", "class_map.json")


def _predict_image_symlinked_out(ws: Workspace) -> tuple[str, ...]:
    folder = ws.root / "images"
    folder.mkdir()
    shutil.copy(_image_of(ws, "validation", first_json(ws, "validation")[1]), folder / "a.jpg")
    (folder / "b.jpg").symlink_to(ws.secret)
    ws.image = folder
    return ("b.jpg",)


def _detection_symlinked_out(ws: Workspace) -> tuple[str, ...]:
    first = sorted(ws.detections.glob("*.json"))[0]
    body = json.loads(first.read_text())
    body["annotations"] = [{**a, "class_id": ws.marker.decode()} for a in body["annotations"]]
    (ws.outside / "det.json").write_text(json.dumps(body))
    first.unlink()
    first.symlink_to(ws.outside / "det.json")
    return (first.name,)


def _hardlinked_annotation(ws: Workspace) -> tuple[str, ...]:
    """An annotation JSON hard-linked to a file outside the dataset (carrying the marker)."""

    def go(p: Path, ann: dict, ch: str) -> None:
        ann["categories"] = [
            {"class_id": 0, "name": ws.marker.decode()},
            {"class_id": 1, "name": "b"},
        ]
        outside = ws.outside / f"{ch}.json"
        outside.write_text(json.dumps(ann))
        p.unlink()
        os.link(outside, p)

    return _each(ws, go)


def _tar_absolute_member(ws: Workspace) -> tuple[str, ...]:
    """Good members plus one with an absolute name: refused, not stripped and extracted."""
    ws.model = ws.root / "absolute" / "model.tar.gz"
    ws.model.parent.mkdir()
    tar_of(ws.model, [*_members_of(ws), _file_member("/odp-planted.txt", b"x")])
    ws.model_channel = ws.model.parent
    return ("model.tar.gz", "odp-planted")


def _coco_file_name_outside(ws: Workspace) -> tuple[str, ...]:
    coco = json.loads(ws.coco_json.read_text())
    coco["images"][0]["file_name"] = "../../outside/secret.jpg"
    coco["images"][0].update(width=SECRET_SIZE[0], height=SECRET_SIZE[1])
    coco["images"][1]["file_name"] = str(ws.secret)
    coco["images"][1].update(width=SECRET_SIZE[0], height=SECRET_SIZE[1])
    ws.coco_json.write_text(json.dumps(coco))
    return ("secret.jpg", ws.coco_json.name)


# ------------------------------------------------------------------ exhausting a worker


def _fifo_image(ws: Workspace) -> tuple[str, ...]:
    def go(p: Path, ann: dict, ch: str) -> None:
        img = _image_of(ws, ch, ann)
        img.unlink()
        os.mkfifo(img)

    return _each(ws, go)


def _device_image(ws: Workspace) -> tuple[str, ...]:
    def go(p: Path, ann: dict, ch: str) -> None:
        img = _image_of(ws, ch, ann)
        img.unlink()
        try:  # a character device like /dev/zero (endless bytes), where mknod is allowed
            os.mknod(img, stat.S_IFCHR | 0o644, os.makedev(1, 5))
        except (PermissionError, OSError) as exc:
            raise CaseUnavailable(f"cannot create a device file here: {exc}") from exc

    return _each(ws, go)


def _fifo_hyperparameters(ws: Workspace) -> tuple[str, ...]:
    ws.hp_fifo = True
    return ("hyperparameters.json",)


def _fifo_detection_file(ws: Workspace) -> tuple[str, ...]:
    first = sorted(ws.detections.glob("*.json"))[0]
    first.unlink()
    os.mkfifo(first)
    return (first.name,)


def _huge_class_id(ws: Workspace) -> tuple[str, ...]:
    def go(p: Path, ann: dict, _ch: str) -> None:
        ann["annotations"][0]["class_id"] = 1_000_000_000
        p.write_text(json.dumps(ann))

    return _each(ws, go)


def _bomb_image(ws: Workspace) -> tuple[str, ...]:
    names = _stems(ws)
    for ch in ("train", "validation"):
        inject(ws.dataset, "bomb", ch, 0)
    return names


def _png_20000(ws: Workspace) -> tuple[str, ...]:
    ws.image = ws.root / "huge.png"
    ws.image.write_bytes(png_header_bomb(20_000, 20_000))
    return ("huge.png",)


def _tar_bomb_expanding(ws: Workspace) -> tuple[str, ...]:
    ws.model = ws.root / "bomb" / "model.tar.gz"
    ws.model.parent.mkdir()
    tar_bomb(ws.model, "model_algo_1-0000.params", 3 << 30)  # 3 GiB of zeros, ~3 MB
    return ("model.tar.gz",)


def _tar_bomb_declared(ws: Workspace) -> tuple[str, ...]:
    ws.model = ws.root / "declared" / "model.tar.gz"
    ws.model.parent.mkdir()
    tar_declaring(ws.model, "model_algo_1-0000.params", 64 << 30)
    return ("model.tar.gz",)


def _tar_many_members(ws: Workspace) -> tuple[str, ...]:
    ws.model = ws.root / "many" / "model.tar.gz"
    ws.model.parent.mkdir()
    with gzip.open(ws.model, "wb", compresslevel=1) as f:
        for i in range(50_000):
            info = tarfile.TarInfo(f"m/{i}")
            f.write(info.tobuf(format=tarfile.GNU_FORMAT))
        f.write(b"\0" * 1024)
    return ("model.tar.gz",)


def _closed_port(ws: Workspace) -> tuple[str, ...]:
    import socket

    with socket.socket() as s:  # a port nothing listens on (bound, then released)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    ws.env["MLFLOW_TRACKING_URI"] = uri
    return (f"127.0.0.1:{port}",)


# ------------------------------------------------------------------ archives


def _tar_traversal(ws: Workspace) -> tuple[str, ...]:
    ws.model = ws.root / "evil" / "model.tar.gz"
    ws.model.parent.mkdir()
    escape = ws.root / "escaped.txt"
    absolute = f"/tmp/odp-abs-{ws.marker.decode()}"  # noqa: S108  a hostile member's name
    ws.must_not_exist += [escape, Path(absolute)]
    good = _members_of(ws)
    tar_of(
        ws.model,
        [
            *good,
            _file_member("../../escaped.txt", ws.marker),
            _file_member(absolute, ws.marker),
            _link_member("link_out", str(ws.outside)),
            _file_member("link_out/planted.txt", ws.marker),
            _link_member("hard_secret", str(ws.secret), tarfile.LNKTYPE),
        ],
    )
    ws.must_not_exist.append(ws.outside / "planted.txt")
    return ("model.tar.gz", "escaped.txt", "link_out", "hard_secret", "odp-abs")


def _members_of(ws: Workspace) -> list[tuple[tarfile.TarInfo, bytes]]:
    base = ws.root / "model.tar.gz"
    out = []
    with tarfile.open(base) as tar:
        for m in tar.getmembers():
            fh = tar.extractfile(m)
            if fh is not None:
                out.append(_file_member(m.name, fh.read()))
    return out


def _truncated_archive(ws: Workspace) -> tuple[str, ...]:
    data = (ws.root / "model.tar.gz").read_bytes()
    ws.model = ws.root / "cut" / "model.tar.gz"
    ws.model.parent.mkdir()
    ws.model.write_bytes(data[: len(data) // 2])
    return ("model.tar.gz",)


def _not_an_archive(ws: Workspace) -> tuple[str, ...]:
    ws.model = ws.root / "junk" / "model.tar.gz"
    ws.model.parent.mkdir()
    ws.model.write_bytes(b"this is not a tarball\n" * 50)
    return ("model.tar.gz",)


def _empty_archive(ws: Workspace) -> tuple[str, ...]:
    ws.model = ws.root / "empty" / "model.tar.gz"
    ws.model.parent.mkdir()
    ws.model.write_bytes(b"")
    return ("model.tar.gz",)


# ------------------------------------------------------------------ images


def _truncated(ws: Workspace) -> tuple[str, ...]:
    names = _stems(ws)
    for ch in ("train", "validation"):
        inject(ws.dataset, "truncated", ch, 0)
    return names


def _jpeg_cut_with_end_marker(ws: Workspace) -> tuple[str, ...]:
    """A JPEG cut in half with an end marker appended: the header and the end marker are
    fine, libjpeg decodes the lower half grey and only warns."""

    def go(p: Path, ann: dict, ch: str) -> None:
        img = _image_of(ws, ch, ann)
        pixels = Image.open(img).convert("RGB").resize((320, 240))
        buf = io.BytesIO()
        pixels.save(buf, format="JPEG", quality=95)
        data = buf.getvalue()
        _set_image(ws, ch, p, ann, data)
        img.write_bytes(data[: len(data) // 2] + b"\xff\xd9")

    return _each(ws, go)


def _decode_too(ws: Workspace) -> tuple[str, ...]:
    ws.extra_args.append("--decode")  # validate reads headers unless asked to decode
    return _jpeg_cut_with_end_marker(ws)


def _jpeg_header_bomb(ws: Workspace) -> tuple[str, ...]:
    """A small JPEG whose frame header claims 65500x65500 pixels (4.3 G)."""
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 200, 10)).save(buf, format="JPEG")
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = (65500).to_bytes(2, "big") * 2
    ws.image = ws.root / "claims.jpg"
    ws.image.write_bytes(bytes(data))
    return ("claims.jpg",)


def _grayscale(ws: Workspace) -> tuple[str, ...]:
    names = _stems(ws)
    for ch in ("train", "validation"):
        inject(ws.dataset, "grayscale", ch, 0)
    return names


def _cmyk(ws: Workspace) -> tuple[str, ...]:
    def go(p: Path, ann: dict, ch: str) -> None:
        img = _image_of(ws, ch, ann)
        im = Image.open(img).convert("CMYK")
        buf = io.BytesIO()
        im.save(buf, format="JPEG")
        img.unlink()
        ann["file"] = img.with_suffix(".jpg").name
        _image_of(ws, ch, ann).write_bytes(buf.getvalue())
        p.write_text(json.dumps(ann))

    return _each(ws, go)


def _sixteen_bit(ws: Workspace) -> tuple[str, ...]:
    import cv2
    import numpy as np

    def go(p: Path, ann: dict, ch: str) -> None:
        img = _image_of(ws, ch, ann)
        pixels = np.asarray(Image.open(img).convert("RGB")).astype(np.uint16) * 257
        img.unlink()
        ann["file"] = img.with_suffix(".png").name
        ok, data = cv2.imencode(".png", pixels[:, :, ::-1].copy())
        assert ok
        _image_of(ws, ch, ann).write_bytes(data.tobytes())
        p.write_text(json.dumps(ann))

    return _each(ws, go)


def _empty_image(ws: Workspace) -> tuple[str, ...]:
    return _each(ws, lambda _p, ann, ch: _image_of(ws, ch, ann).write_bytes(b""))


def _overlap(ws: Workspace) -> tuple[str, ...]:
    expected = inject(ws.dataset, "train_val_overlap", "validation", 0)
    return tuple({Path(expected.file).stem, *_stems(ws)})


# ------------------------------------------------------------------ annotation JSON


def _duplicate_keys(ws: Workspace) -> tuple[str, ...]:
    def text(ann: dict) -> str:
        body = json.dumps(ann)[1:]
        return '{"annotations": [{"class_id": 1, "left": 0, "top": 0, "width": 4, ' + (
            '"height": 4}], ' + body
        )

    return _with_json_text(ws, text)


def _non_finite(ws: Workspace) -> tuple[str, ...]:
    def text(ann: dict) -> str:
        ann["annotations"][0].update(left=float("nan"), width=float("inf"))
        return json.dumps(ann)

    return _with_json_text(ws, text)


def _huge_numbers(ws: Workspace) -> tuple[str, ...]:
    def text(ann: dict) -> str:
        box = ann["annotations"][0]
        return (
            json.dumps({**ann, "annotations": [{**box, "left": "__BIG__", "height": "__EXP__"}]})
            .replace('"__BIG__"', "1" + "0" * 400)
            .replace('"__EXP__"', "1e400")
        )

    return _with_json_text(ws, text)


def _non_utf8(ws: Workspace) -> tuple[str, ...]:
    def go(p: Path, ann: dict, _ch: str) -> None:
        ann["categories"] = [{"class_id": 0, "name": "caf\u00e9"}, {"class_id": 1, "name": "b"}]
        p.write_bytes(json.dumps(ann, ensure_ascii=False).encode("latin-1"))

    return _each(ws, go)


def _deeply_nested(ws: Workspace) -> tuple[str, ...]:
    return _with_json_text(
        ws,
        lambda ann: (
            f'{{"file": "{ann["file"]}", "image_size": ' + "[" * 200_000 + "]" * 200_000 + "}"
        ),
    )


def _empty_json(ws: Workspace) -> tuple[str, ...]:
    return _with_json_text(ws, lambda _ann: "")


# ------------------------------------------------------------------ training configuration


def _hp(**over: str) -> Callable[[Workspace], tuple[str, ...]]:
    """A hyperparameter case: ``over`` replaces the tiny job's values."""

    def build(ws: Workspace) -> tuple[str, ...]:
        ws.hp_over.update(over)
        return tuple(over)

    return build


def _nested_hyperparameters_json(ws: Workspace) -> tuple[str, ...]:
    ws.hp_text = json.dumps(
        {"num_classes": "2", "num_training_samples": "16", "epochs": {"a": ["1"]}}
    )
    return ("epochs",)


def _bad_env_limit(ws: Workspace) -> tuple[str, ...]:
    """A limit that is not a number: a ClientError naming it (train reads it for its
    model channel), never a traceback or an AlgorithmError."""
    ws.env["ODP_MAX_ARCHIVE_BYTES"] = "abc"
    seed = ws.root / "seed"
    seed.mkdir()
    shutil.copy(ws.root / "model.tar.gz", seed / "model.tar.gz")
    ws.model_channel = seed
    return ("ODP_MAX_ARCHIVE_BYTES",)


def _huge_class_map(ws: Workspace) -> tuple[str, ...]:
    """A model folder whose class_map.json lists 200,000 classes: refused by its size,
    never turned into a 45 MB failure message."""
    folder = _extracted_model(ws)
    (folder / "class_map.json").write_text(json.dumps({str(i): f"c{i}" for i in range(200_000)}))
    ws.model = ws.model_channel = folder
    return ("class_map.json",)


def _file_name_with_newline(ws: Workspace) -> tuple[str, ...]:
    def go(p: Path, ann: dict, ch: str) -> None:
        img = _image_of(ws, ch, ann)
        ann["file"] = "line\nbreak.jpg"
        img.rename(_image_of(ws, ch, ann))
        p.write_text(json.dumps(ann))

    return (*_each(ws, go), "line")


def _detection_duplicate_keys_and_huge_id(ws: Workspace) -> tuple[str, ...]:
    files = sorted(ws.detections.glob("*.json"))
    first = files[0]
    body = json.loads(first.read_text())
    text = json.dumps(body)
    first.write_text('{"annotations": [], ' + text[1:])  # "annotations" twice
    second = json.loads(files[1].read_text())
    second["annotations"][0]["class_id"] = 1_000_000_000
    files[1].write_text(json.dumps(second))
    return (first.name, files[1].name)


def _register_bad_name(ws: Workspace) -> tuple[str, ...]:
    ws.extra_args += ["--name", "a\nb"]
    return ("model name",)


def _register_nan_metrics(ws: Workspace) -> tuple[str, ...]:
    metrics = ws.root / "metrics.json"
    metrics.write_text('{"metrics": {"mAP": NaN, "AP50": "0.5", "AP": 0.4}}')
    ws.extra_args += ["--metrics", str(metrics)]
    return ("mAP", "AP50")


def _batch_larger_than_data(ws: Workspace) -> tuple[str, ...]:
    ws.hp_over["mini_batch_size"] = 64
    return ("mini_batch_size",)


def _invalid_hyperparameters_json(ws: Workspace) -> tuple[str, ...]:
    ws.hp_text = '{"num_classes": "2", "mini_batch_size": '
    return ("hyperparameters.json",)


def _image_shape_huge(ws: Workspace) -> tuple[str, ...]:
    ws.hp_over["image_shape"] = 100_000
    return ("image_shape",)


# ------------------------------------------------------------------ outputs


def _unwritable_output(ws: Workspace) -> tuple[str, ...]:
    """The output folder cannot be created or written: read-only for a normal user; as
    root (who may write anywhere), its parent is a regular file."""
    parent = ws.root / "locked"
    if os.geteuid() == 0:
        parent.write_text("a file where a folder is expected\n")
    else:
        parent.mkdir()
        parent.chmod(0o555)
    ws.out_dir = parent / "out"
    return ("locked",)


# ------------------------------------------------------------------ what the user already has


def _output_paths(ws: Workspace) -> dict[str, Path]:
    """Every path the writers write to (as the test builds their argv): name -> path."""
    ws.predict_output = ws.out / "pred"
    return {
        "report": ws.out / "report",  # validate --report
        "ds": ws.out / "ds",  # convert json, import voc/coco
        "eval": ws.out / "eval",
        "pred": ws.predict_output,
        "data_train.rec": ws.out / "data_train.rec",  # convert recordio (its first file)
        "train.jsonl": ws.out.parent / "train.jsonl",  # convert manifest
    }


def _user_files_at_outputs(ws: Workspace) -> tuple[str, ...]:
    """Each output path already holds the user's data: a folder with a file in it, or the
    file itself (`mkdir d; touch d/keep; odp predict MODEL IMAGES d` must not remove keep)."""
    paths = _output_paths(ws)
    for name, path in paths.items():
        if "." in name:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("the user's own file\n")
        else:
            path.mkdir(parents=True)
            (path / "keep").write_text("the user's own file\n")
    return tuple(paths)


def _user_files_with_overwrite(ws: Workspace) -> tuple[str, ...]:
    """``--overwrite`` replaces only an earlier output of the command: a folder without the
    marker, or one whose marker does not list ``keep``, is still refused (files are the
    exception: ``--overwrite`` on a file output is the user's explicit request)."""
    paths = _output_paths(ws)
    for name, path in paths.items():
        if "." in name:
            continue
        path.mkdir(parents=True)
        (path / "keep").write_text("the user's own file\n")
        if name in ("ds", "pred"):  # an earlier output of odp, with the user's file added
            (path / "a.json").write_text("{}")
            (path / ".odp-complete").write_text(json.dumps({"files": {"a.json": 2}}))
    ws.extra_args.append("--overwrite")
    return ("report", "ds", "eval", "pred", "keep")


def _file_at_output_folder(ws: Workspace) -> tuple[str, ...]:
    """A file where an output folder goes is never turned into a folder, --overwrite or not."""
    paths = _output_paths(ws)
    for name, path in paths.items():
        if "." not in name:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("a file, not a folder\n")
    ws.extra_args.append("--overwrite")
    return ("report", "ds", "eval", "pred")


# ------------------------------------------------------------------ importers


def _coco_edit(ws: Workspace, fn: Callable[[dict], None]) -> None:
    coco = json.loads(ws.coco_json.read_text())
    fn(coco)
    ws.coco_json.write_text(json.dumps(coco))


def _coco_duplicate_file_name(ws: Workspace) -> tuple[str, ...]:
    def go(coco: dict) -> None:
        coco["images"][1]["file_name"] = coco["images"][0]["file_name"]

    _coco_edit(ws, go)
    return (json.loads(ws.coco_json.read_text())["images"][0]["file_name"],)


def _coco_duplicate_category(ws: Workspace) -> tuple[str, ...]:
    _coco_edit(ws, lambda c: c["categories"].append({"id": 1, "name": "impostor"}))
    return ("categor", "impostor")


def _coco_missing_bbox(ws: Workspace) -> tuple[str, ...]:
    _coco_edit(ws, lambda c: c["annotations"][0].pop("bbox"))
    return ("bbox",)


def _coco_corrupt_image(ws: Workspace) -> tuple[str, ...]:
    coco = json.loads(ws.coco_json.read_text())
    name = coco["images"][0]["file_name"]
    img = ws.coco_json.parent / "images" / name
    img.write_bytes(img.read_bytes()[:300])
    return (name,)


def _voc_xml(ws: Workspace) -> Path:
    return sorted((ws.voc / "Annotations").glob("*.xml"))[0]


def _voc_missing_coordinate(ws: Workspace) -> tuple[str, ...]:
    xml = _voc_xml(ws)
    text = xml.read_text()
    start, end = text.index("<ymax>"), text.index("</ymax>") + len("</ymax>")
    xml.write_text(text[:start] + text[end:])
    return (xml.stem,)


def _voc_zero_width(ws: Workspace) -> tuple[str, ...]:
    xml = _voc_xml(ws)
    text = xml.read_text()
    xmin = text[text.index("<xmin>") + 6 : text.index("</xmin>")]
    start, end = text.index("<xmax>") + 6, text.index("</xmax>")
    xml.write_text(text[:start] + xmin + text[end:])
    return (xml.stem,)


def _voc_entity_bomb(ws: Workspace) -> tuple[str, ...]:
    xml = _voc_xml(ws)
    ents = ['<!ENTITY a0 "lol">'] + [
        f'<!ENTITY a{i} "{("&a" + str(i - 1) + ";") * 10}">' for i in range(1, 10)
    ]
    text = xml.read_text().replace("<annotation>", "<annotation>&a9;", 1)
    xml.write_text(f"<?xml version='1.0'?>\n<!DOCTYPE annotation [{''.join(ents)}]>\n{text}")
    return (xml.stem,)


def _voc_box_outside_the_image(ws: Workspace) -> tuple[str, ...]:
    """xmax=1e308 and xmin=-500: refused (box.out_of_bounds), not written."""
    xml = _voc_xml(ws)
    text = xml.read_text()
    xmin = text[text.index("<xmin>") : text.index("</xmin>") + 7]
    xmax = text[text.index("<xmax>") : text.index("</xmax>") + 7]
    xml.write_text(
        text.replace(xmin, "<xmin>-500</xmin>", 1).replace(xmax, "<xmax>1e308</xmax>", 1)
    )
    return (xml.stem,)


def _voc_missing_images(ws: Workspace) -> tuple[str, ...]:
    """Three annotated images missing: skipped with a warning naming them, and the split
    made over the images that are there (both channels still written)."""
    gone = sorted((ws.voc / "JPEGImages").iterdir())[:3]
    for path in gone:
        path.unlink()
    return tuple(p.stem for p in gone)


def _coco_images_elsewhere(ws: Workspace) -> tuple[str, ...]:
    """--images-dir names a folder holding none of the images: refused, not an empty
    dataset."""
    ws.extra_args += ["--images-dir", str(ws.outside)]
    return ("no image found",)


def _voc_corrupt_image(ws: Workspace) -> tuple[str, ...]:
    img = sorted((ws.voc / "JPEGImages").iterdir())[0]
    img.write_bytes(img.read_bytes()[:300])
    return (img.stem,)


# ------------------------------------------------------------------ manifests


def _manifest_edit(ws: Workspace, fn: Callable[[list[str]], None]) -> None:
    lines = ws.manifest.read_text().splitlines()
    fn(lines)
    ws.manifest.write_text("\n".join(lines) + "\n")


def _manifest_malformed(ws: Workspace) -> tuple[str, ...]:
    _manifest_edit(ws, lambda ls: ls.__setitem__(1, ls[1][:-9]))
    return ("line 2",)


def _manifest_deeply_nested(ws: Workspace) -> tuple[str, ...]:
    deep = '{"source-ref": "x.jpg", "bounding-box": ' + "[" * 200_000 + "]" * 200_000 + "}"
    _manifest_edit(ws, lambda ls: ls.insert(1, deep))
    return ("line 2",)


def _manifest_non_utf8(ws: Workspace) -> tuple[str, ...]:
    ws.manifest.write_bytes(ws.manifest.read_bytes().replace(b"source-ref", b"source-r\xe9f", 2))
    return ("line 1",)


def _manifest_huge_class_id(ws: Workspace) -> tuple[str, ...]:
    def go(lines: list[str]) -> None:
        obj = json.loads(lines[0])
        obj["bounding-box"]["annotations"][0]["class_id"] = 1_000_000_000
        lines[0] = json.dumps(obj)

    _manifest_edit(ws, go)
    return ("line 1",)


def _manifest_fifo_source(ws: Workspace) -> tuple[str, ...]:
    fifo = ws.root / "fifo.jpg"
    os.mkfifo(fifo)

    def go(lines: list[str]) -> None:
        obj = json.loads(lines[0])
        obj["source-ref"] = "fifo.jpg"
        lines[0] = json.dumps(obj)

    _manifest_edit(ws, go)
    return ("line 1", "fifo.jpg")


# ------------------------------------------------------------------ the corpus

CASES: list[Case] = [
    # reading outside the dataset
    Case("absolute_file", OUTSIDE, DATASET_READERS, _absolute_file, doc="`file` is absolute"),
    Case("dotdot_file", OUTSIDE, DATASET_READERS, _dotdot_file, doc="`file` climbs out with ../"),
    Case("symlinked_image", OUTSIDE, DATASET_READERS, _symlinked_image),
    Case("symlinked_annotation", OUTSIDE, JSON_READERS, _symlinked_annotation),
    Case("symlinked_channel", OUTSIDE, DATASET_READERS, _symlinked_channel),
    Case("coco_file_name_outside", OUTSIDE, (IMPORT_COCO,), _coco_file_name_outside),
    Case(
        "model_files_symlinked_out",
        OUTSIDE,
        (TRAIN, EVALUATE, PREDICT),
        _model_files_symlinked_out,
        doc="a model folder's hyperparams.json / class_map.json link outside it",
    ),
    Case("predict_image_symlinked_out", OUTSIDE, (PREDICT,), _predict_image_symlinked_out),
    Case("detection_symlinked_out", OUTSIDE, (MAP,), _detection_symlinked_out),
    Case("hardlinked_annotation", OUTSIDE, JSON_READERS, _hardlinked_annotation),
    Case(
        "tar_absolute_member",
        OUTSIDE,
        (TRAIN, *MODEL_READERS),
        _tar_absolute_member,
        doc="a member named /odp-planted.txt beside the good ones",
    ),
    Case(
        "tar_traversal",
        OUTSIDE,
        (EVALUATE, PREDICT),
        _tar_traversal,
        doc="../, absolute, symlink and hard-link members",
    ),
    # exhausting a worker
    Case("fifo_image", EXHAUST, DATASET_READERS, _fifo_image, doc="a FIFO named .jpg"),
    Case(
        "device_image",
        EXHAUST,
        (VALIDATE, CONVERT_RECORDIO, TRAIN),
        _device_image,
        doc="a character device (like /dev/zero) named .jpg",
    ),
    Case("fifo_hyperparameters", EXHAUST, (TRAIN,), _fifo_hyperparameters),
    Case("fifo_detection_file", EXHAUST, (MAP,), _fifo_detection_file),
    Case("huge_class_id", EXHAUST, JSON_READERS, _huge_class_id, doc="class_id 1e9"),
    Case("pixel_bomb_dataset", EXHAUST, IMAGE_READERS, _bomb_image),
    Case("pixel_bomb_predict", EXHAUST, (PREDICT,), _png_20000, doc="PNG claiming 20000x20000"),
    Case("jpeg_header_bomb_predict", EXHAUST, (PREDICT,), _jpeg_header_bomb),
    Case(
        "tar_bomb_expanding",
        EXHAUST,
        MODEL_READERS,
        _tar_bomb_expanding,
        doc="a member that really expands to 3 GiB",
    ),
    Case(
        "tar_bomb_declared",
        EXHAUST,
        (EVALUATE, PREDICT),
        _tar_bomb_declared,
        doc="a member header declaring 64 GiB",
    ),
    Case("tar_many_members", EXHAUST, (EVALUATE, PREDICT), _tar_many_members),
    Case("mlflow_closed_port", EXHAUST, (REGISTER,), _closed_port),
    Case("manifest_fifo_source", EXHAUST, (CONVERT_JSON,), _manifest_fifo_source),
    Case("deeply_nested_json", EXHAUST, JSON_READERS, _deeply_nested),
    Case("manifest_deeply_nested", EXHAUST, (CONVERT_JSON,), _manifest_deeply_nested),
    # wrong results with exit 0
    Case("batch_larger_than_data", WRONG, (TRAIN,), _batch_larger_than_data),
    Case("coco_duplicate_file_name", WRONG, (IMPORT_COCO,), _coco_duplicate_file_name),
    Case("coco_duplicate_category", WRONG, (IMPORT_COCO,), _coco_duplicate_category),
    Case("voc_missing_coordinate", WRONG, (IMPORT_VOC,), _voc_missing_coordinate),
    Case("voc_xmin_equals_xmax", WRONG, (IMPORT_VOC,), _voc_zero_width, "refuse_or_warn"),
    Case("truncated_image", WRONG, IMAGE_READERS, _truncated),
    Case(
        "jpeg_cut_with_end_marker",
        WRONG,
        (TRAIN, EVALUATE, PREDICT),
        _jpeg_cut_with_end_marker,
        doc="decoders refuse it (I002): a scan cut short, not grey pixels",
    ),
    Case("jpeg_cut_validate_decode", WRONG, (VALIDATE,), _decode_too),
    Case("cmyk_image", WRONG, IMAGE_READERS, _cmyk),
    Case("sixteen_bit_png", WRONG, IMAGE_READERS, _sixteen_bit),
    Case("grayscale_image", WRONG, IMAGE_READERS, _grayscale),
    Case("empty_image_file", WRONG, IMAGE_READERS, _empty_image),
    Case("train_validation_overlap", WRONG, (VALIDATE, CONVERT_RECORDIO, TRAIN), _overlap),
    Case("duplicate_json_keys", WRONG, JSON_READERS, _duplicate_keys),
    Case("non_finite_json", WRONG, JSON_READERS, _non_finite, doc="NaN and Infinity"),
    Case("huge_numbers_json", WRONG, JSON_READERS, _huge_numbers, doc="10^400 and 1e400"),
    Case("manifest_huge_class_id", WRONG, (CONVERT_JSON,), _manifest_huge_class_id),
    Case("voc_box_outside_the_image", WRONG, (IMPORT_VOC,), _voc_box_outside_the_image),
    Case("voc_missing_images", WRONG, (IMPORT_VOC,), _voc_missing_images, "refuse_or_warn"),
    Case("coco_images_elsewhere", WRONG, (IMPORT_COCO,), _coco_images_elsewhere),
    Case("file_name_with_newline", WRONG, DATASET_READERS, _file_name_with_newline),
    Case("detection_duplicate_keys_huge_id", WRONG, (MAP,), _detection_duplicate_keys_and_huge_id),
    Case("register_bad_name", WRONG, (REGISTER,), _register_bad_name),
    Case("register_nan_metrics", WRONG, (REGISTER,), _register_nan_metrics, "refuse_or_warn"),
    # numbers: integers are integers, every number bounded
    Case("epochs_1e308", EXHAUST, (TRAIN,), _hp(epochs="1e308")),
    Case("num_classes_1e9", EXHAUST, (TRAIN,), _hp(num_classes="1000000000")),
    Case("seed_1e29", TRACEBACK, (TRAIN,), _hp(seed="1e29")),
    Case("max_runtime_1e30", EXHAUST, (TRAIN,), _hp(max_runtime_seconds="1e30")),
    Case("overlap_threshold_2", TRACEBACK, (TRAIN,), _hp(overlap_threshold="2")),
    Case("nested_hyperparameters_json", TRACEBACK, (TRAIN,), _nested_hyperparameters_json),
    Case("bad_env_limit", TRACEBACK, (TRAIN, *MODEL_READERS), _bad_env_limit),
    Case("huge_class_map", EXHAUST, (TRAIN, EVALUATE, PREDICT), _huge_class_map),
    # what the user already has at an output
    Case("user_files_at_outputs", DATALOSS, WRITERS, _user_files_at_outputs),
    Case(
        "user_files_with_overwrite",
        DATALOSS,
        (VALIDATE, CONVERT_JSON, IMPORT_VOC, IMPORT_COCO, EVALUATE, PREDICT),
        _user_files_with_overwrite,
    ),
    Case(
        "file_at_output_folder",
        DATALOSS,
        (VALIDATE, CONVERT_JSON, IMPORT_VOC, IMPORT_COCO, EVALUATE, PREDICT),
        _file_at_output_folder,
    ),
    # tracebacks and mislabelled errors
    Case(
        "unwritable_output",
        TRACEBACK,
        (
            VALIDATE,
            CONVERT_RECORDIO,
            CONVERT_MANIFEST,
            CONVERT_JSON,
            IMPORT_VOC,
            IMPORT_COCO,
            EVALUATE,
        ),
        _unwritable_output,
    ),
    Case("coco_missing_bbox", TRACEBACK, (IMPORT_COCO,), _coco_missing_bbox),
    Case("coco_corrupt_image", TRACEBACK, (IMPORT_COCO,), _coco_corrupt_image),
    Case("voc_corrupt_image", TRACEBACK, (IMPORT_VOC,), _voc_corrupt_image),
    Case(
        "voc_entity_bomb",
        TRACEBACK,
        (IMPORT_VOC,),
        _voc_entity_bomb,
        doc="XML entity expansion (billion laughs)",
    ),
    Case("truncated_archive", TRACEBACK, MODEL_READERS, _truncated_archive),
    Case("not_an_archive", TRACEBACK, MODEL_READERS, _not_an_archive),
    Case("empty_archive", TRACEBACK, (EVALUATE, PREDICT), _empty_archive),
    Case("invalid_hyperparameters_json", TRACEBACK, (TRAIN,), _invalid_hyperparameters_json),
    Case("image_shape_huge", TRACEBACK, (TRAIN,), _image_shape_huge),
    Case("non_utf8_json", TRACEBACK, JSON_READERS, _non_utf8),
    Case("empty_json_file", TRACEBACK, JSON_READERS, _empty_json),
    Case("manifest_malformed_line", TRACEBACK, (CONVERT_JSON,), _manifest_malformed),
    Case("manifest_non_utf8", TRACEBACK, (CONVERT_JSON,), _manifest_non_utf8),
]
# "leftover" is asserted for every case (no .part, no scratch in TMPDIR, no live workers).

assert len({c.name for c in CASES}) == len(CASES)
