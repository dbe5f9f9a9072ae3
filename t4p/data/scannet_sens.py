"""ScanNet's raw ``.sens`` RGB-D stream, read frame by frame.

Layout (ScanNet ``SensReader``, little-endian)::

    uint32 version (4) | uint64 n + n bytes sensor name
    float32[16] intrinsic_color, extrinsic_color, intrinsic_depth, extrinsic_depth
    int32 color compression (0 raw, 1 png, 2 jpeg) | int32 depth compression (0 raw ushort, 1 zlib ushort)
    uint32 color width, color height, depth width, depth height | float32 depth shift (1000)
    uint64 number of frames, then per frame:
      float32[16] camera-to-world | uint64 timestamp colour, timestamp depth
      uint64 colour bytes, depth bytes | colour data | depth data
    (then IMU frames, which t4p does not read)

Only every ``frame_skip``-th frame is decoded; the others are skipped with ``seek``, so at
most one frame's raw bytes are held at a time, never the whole file. The header's cameras must
fit their images (see ``t4p.data.scannet_rgbd.frame_cameras``); a frame whose colour or depth does
not decode, or decodes to another size than the header's, is an error naming the file, the frame
and the byte offset of its data.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from t4p.data.checks import SourceNotFoundError
from t4p.data.format_api import PrepareSettings
from t4p.data.scannet_rgbd import RGBDFrame, SkipStats, depth_mm_to_m, frame_cameras, frame_problem
from t4p.errors import UserError

SENS_VERSION = 4
COLOR_COMPRESSION = {0: "raw", 1: "png", 2: "jpeg"}
DEPTH_COMPRESSION = {0: "raw_ushort", 1: "zlib_ushort"}
FRAME_HEADER = struct.Struct("<16f4Q")  # pose, timestamps, colour bytes, depth bytes


class SensFormatError(UserError, ValueError):
    """The ``.sens`` file is malformed or truncated (the message names file, frame and byte offset)."""


@dataclass
class SensHeader:
    version: int
    sensor_name: str
    K_color: np.ndarray  # (4, 4)
    K_depth: np.ndarray  # (4, 4)
    color_compression: str
    depth_compression: str
    color_size: tuple[int, int]  # (width, height)
    depth_size: tuple[int, int]
    depth_shift: float
    num_frames: int


def _read_exact(f, n: int, path: Path, what: str) -> bytes:
    pos = f.tell()
    data = f.read(n)
    if len(data) != n:
        raise SensFormatError(
            f"{path}: truncated at byte {pos} while reading {what}: expected {n} bytes, got {len(data)}"
        )
    return data


def read_sens_header(f, path: Path) -> SensHeader:
    (version,) = struct.unpack("<I", _read_exact(f, 4, path, "the version"))
    if version != SENS_VERSION:
        raise SensFormatError(
            f"{path}: version {version}, expected {SENS_VERSION} (is this a ScanNet .sens file?)"
        )
    (n,) = struct.unpack("<Q", _read_exact(f, 8, path, "the sensor name length"))
    if n > 4096:
        raise SensFormatError(f"{path}: sensor name length {n} is implausible (expected < 4096)")
    name = _read_exact(f, n, path, "the sensor name").decode(errors="replace")
    mats = np.frombuffer(_read_exact(f, 4 * 64, path, "the calibration"), dtype="<f4").reshape(4, 4, 4)
    cc, dc, cw, ch, dw, dh, shift = struct.unpack("<2i4If", _read_exact(f, 28, path, "the image header"))
    (num_frames,) = struct.unpack("<Q", _read_exact(f, 8, path, "the frame count"))
    if cc not in COLOR_COMPRESSION or dc not in DEPTH_COMPRESSION:
        raise SensFormatError(f"{path}: unsupported compression colour={cc} depth={dc}")
    return SensHeader(
        version,
        name,
        mats[0].astype(np.float64),
        mats[2].astype(np.float64),
        COLOR_COMPRESSION[cc],
        DEPTH_COMPRESSION[dc],
        (cw, ch),
        (dw, dh),
        shift,
        num_frames,
    )


def _decode_color(data: bytes, h: SensHeader, path: Path, i: int, offset: int) -> np.ndarray:
    w, hh = h.color_size
    where = f"{path}: frame {i} (colour data at byte {offset})"
    if h.color_compression == "raw":
        if len(data) != 3 * w * hh:
            raise SensFormatError(f"{where}: {len(data)} bytes; expected {3 * w * hh} ({w}x{hh} RGB)")
        return np.frombuffer(data, dtype=np.uint8).reshape(hh, w, 3).copy()
    try:
        with Image.open(io.BytesIO(data)) as im:
            color = np.array(im.convert("RGB"))  # (H, W, 3) uint8
    except (OSError, SyntaxError, ValueError) as err:  # PIL: UnidentifiedImageError, truncated data
        raise SensFormatError(f"{where}: not a readable {h.color_compression} image ({err})") from None
    if color.shape[:2] != (hh, w):
        raise SensFormatError(
            f"{where}: the colour image is {color.shape[1]}x{color.shape[0]}; expected {w}x{hh} (the header's size)"
        )
    return color


def _decode_depth(data: bytes, h: SensHeader, path: Path, i: int, offset: int) -> np.ndarray:
    w, hh = h.depth_size
    where = f"{path}: frame {i} (depth data at byte {offset})"
    try:
        raw = zlib.decompress(data) if h.depth_compression == "zlib_ushort" else data
    except zlib.error as err:
        expected = f"expected zlib-compressed {w}x{hh} uint16"
        raise SensFormatError(f"{where}: not valid zlib data ({err}); {expected}") from None
    if len(raw) != 2 * w * hh:
        raise SensFormatError(f"{where}: depth has {len(raw)} bytes, expected {2 * w * hh} ({w}x{hh} uint16)")
    return depth_mm_to_m(np.frombuffer(raw, dtype="<u2").reshape(hh, w), h.depth_shift)


def _check_cameras(h: SensHeader, path: Path) -> None:
    """The header's intrinsics fit its image sizes (the same rules as the exported layout's)."""
    names = (f"{path} header (colour intrinsics)", f"{path} header (depth intrinsics)", f"{path} colour frames",
             f"{path} depth frames")
    hw = (h.color_size[1], h.color_size[0]), (h.depth_size[1], h.depth_size[0])
    frame_cameras(h.K_color[:3, :3], h.K_depth[:3, :3], hw[0], hw[1], names, SensFormatError)


def read_header(path: str | Path) -> SensHeader:
    path = Path(path)
    with open(path, "rb") as f:
        return read_sens_header(f, path)


def iter_sens(path: str | Path, frame_skip: int = 25, stats: SkipStats | None = None) -> Iterator[RGBDFrame]:
    """Yield the usable frames ``i % frame_skip == 0`` of a ``.sens`` file, decoding only those."""
    path = Path(path)
    stats = stats if stats is not None else SkipStats()
    size = os.path.getsize(path)
    scene = path.stem
    with open(path, "rb") as f:
        h = read_sens_header(f, path)
        _check_cameras(h, path)
        k_color, k_depth = h.K_color[:3, :3], h.K_depth[:3, :3]
        for i in range(h.num_frames):
            head = FRAME_HEADER.unpack(_read_exact(f, FRAME_HEADER.size, path, f"the header of frame {i}"))
            pose = np.asarray(head[:16], dtype=np.float64).reshape(4, 4)
            csize, dsize = head[18], head[19]
            start = f.tell()
            if start + csize + dsize > size:
                raise SensFormatError(
                    f"{path}: truncated in frame {i} of {h.num_frames}: its data needs bytes "
                    f"{start}..{start + csize + dsize}, the file has {size}"
                )
            stats.num_frames += 1
            if i % frame_skip:
                f.seek(csize + dsize, os.SEEK_CUR)  # never read frames that are not selected
                continue
            color_bytes = _read_exact(f, csize, path, f"the colour of frame {i}")
            depth_bytes = _read_exact(f, dsize, path, f"the depth of frame {i}")
            depth = _decode_depth(depth_bytes, h, path, i, start + csize)
            del depth_bytes
            problem = frame_problem(pose, depth)
            if problem:
                stats.skip(problem, f"{path.name}:{i}")
                continue
            color = _decode_color(color_bytes, h, path, i, start)
            del color_bytes
            stats.selected += 1
            yield RGBDFrame(scene, i, color, depth, pose, k_color, k_depth)
    stats.summarise(str(path))


# --------------------------------------------------------------------------- format hooks (t4p.data.formats)


def sens_path(src: Path, unit: str) -> Path:
    return src if src.is_file() else src / unit


def units(src: Path, settings: PrepareSettings) -> list[str]:
    """The file itself, or every ``.sens`` under ``src`` (relative paths)."""
    if src.is_file():
        return [src.name]
    files = sorted(p.relative_to(src).as_posix() for p in src.rglob("*.sens"))
    if not files:
        raise SourceNotFoundError(f"{src}: no .sens files found")
    return files


def sources(src: Path, unit: str, settings: PrepareSettings) -> list[Path]:
    return [sens_path(src, unit)]


def open_frames(src: Path, unit: str, frame_skip: int, stats: SkipStats) -> tuple[str, Iterator[RGBDFrame]]:
    """(scene name, its frames) of one unit."""
    path = sens_path(src, unit)
    return path.stem, iter_sens(path, frame_skip, stats)


def write_sens(
    path: str | Path,
    colors_jpeg: list[bytes],
    depths_mm: list[np.ndarray],
    poses: list[np.ndarray],
    K_color: np.ndarray,
    K_depth: np.ndarray,
    color_size: tuple[int, int],
) -> None:
    """Write a minimal ``.sens`` file (JPEG colour, zlib depth); used by the benchmark and demos."""

    def mat(k: np.ndarray) -> bytes:
        m = np.eye(4, dtype="<f4")
        m[: k.shape[0], : k.shape[1]] = k
        return m.tobytes()

    dh, dw = depths_mm[0].shape
    with open(path, "wb") as f:
        name = b"t4p"
        f.write(struct.pack("<IQ", SENS_VERSION, len(name)) + name)
        f.write(mat(K_color) + mat(np.eye(4)) + mat(K_depth) + mat(np.eye(4)))
        f.write(struct.pack("<2i4If", 2, 1, color_size[0], color_size[1], dw, dh, 1000.0))
        f.write(struct.pack("<Q", len(poses)))
        for c, d, p in zip(colors_jpeg, depths_mm, poses, strict=True):
            z = zlib.compress(np.ascontiguousarray(d, dtype="<u2").tobytes())
            f.write(FRAME_HEADER.pack(*np.asarray(p, dtype=np.float32).reshape(-1), 0, 0, len(c), len(z)))
            f.write(c)
            f.write(z)
        f.write(struct.pack("<Q", 0))  # no IMU frames
