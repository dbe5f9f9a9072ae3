"""PLY point files (``t4p.data.ply``): binary (both byte orders) and ASCII in, binary or ASCII out.

Oracles are independent of ``plyfile``: the files read here are written by hand (a header string +
the bytes of a numpy structured array, or formatted text lines), and the files written are checked
by hand (their header text, then their body against a numpy structured array's bytes).
"""

from __future__ import annotations

import numpy as np
import pytest

from t4p.data.ply import PlyError, read_points, write_points

XYZ = np.array([[0.5, -1.25, 2.0], [3.0, 4.5, -0.125], [1e-3, 7.0, 8.0]])
RGB = np.array([[255, 0, 10], [1, 2, 3], [128, 64, 32]])


def _header(fmt: str, n: int, props: list[str], extra: str = "") -> bytes:
    lines = ["ply", f"format {fmt} 1.0", "comment written by hand", f"element vertex {n}",
             *[f"property {p}" for p in props], extra, "end_header"]
    return ("\n".join(line for line in lines if line) + "\n").encode("ascii")


def _vertices(byte_order: str, coord: str = "f4") -> np.ndarray:
    dtype = [("x", byte_order + coord), ("y", byte_order + coord), ("z", byte_order + coord),
             ("nx", byte_order + "f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")]
    arr = np.zeros(len(XYZ), dtype=dtype)
    for i, c in enumerate("xyz"):
        arr[c] = XYZ[:, i]
    for i, c in enumerate(("red", "green", "blue")):
        arr[c] = RGB[:, i]
    arr["nx"] = 9.0
    return arr


PROPS_F4 = ["float x", "float y", "float z", "float nx", "uchar red", "uchar green", "uchar blue"]


def test_reads_binary_little_endian_written_by_hand(tmp_path):
    path = tmp_path / "a.ply"
    path.write_bytes(_header("binary_little_endian", 3, PROPS_F4) + _vertices("<").tobytes())
    xyz, rgb = read_points(path)
    np.testing.assert_allclose(xyz, XYZ.astype(np.float32))
    np.testing.assert_array_equal(rgb, RGB)
    assert xyz.shape == (3, 3) and rgb is not None and rgb.shape == (3, 3)


def test_reads_binary_big_endian_doubles_and_skips_faces(tmp_path):
    """A mesh (ScanNet's ``*_vh_clean_2.ply`` layout: vertices, then a face list): the vertices are read."""
    props = ["double x", "double y", "double z", "float nx", "uchar red", "uchar green", "uchar blue"]
    faces = np.zeros(2, dtype=[("n", "u1"), ("a", ">i4"), ("b", ">i4"), ("c", ">i4")])
    faces["n"] = 3
    faces["a"], faces["b"], faces["c"] = [0, 1], [1, 2], [2, 0]
    head = _header("binary_big_endian", 3, props, "element face 2\nproperty list uchar int vertex_indices")
    path = tmp_path / "mesh.ply"
    path.write_bytes(head + _vertices(">", "f8").tobytes() + faces.tobytes())
    xyz, rgb = read_points(path)
    np.testing.assert_array_equal(xyz, XYZ)
    np.testing.assert_array_equal(rgb, RGB)


def test_reads_ascii_written_by_hand(tmp_path):
    body = "".join(f"{x} {y} {z} 9.0 {r} {g} {b}\n" for (x, y, z), (r, g, b) in zip(XYZ, RGB, strict=True))
    path = tmp_path / "a.ply"
    path.write_bytes(_header("ascii", 3, PROPS_F4) + body.encode())
    xyz, rgb = read_points(path)
    np.testing.assert_allclose(xyz, XYZ, rtol=1e-6)
    np.testing.assert_array_equal(rgb, RGB)


def test_reads_points_without_colour(tmp_path):
    arr = np.zeros(2, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4")])
    arr["z"] = [1.0, 2.0]
    path = tmp_path / "a.ply"
    path.write_bytes(_header("binary_little_endian", 2, ["float x", "float y", "float z"]) + arr.tobytes())
    xyz, rgb = read_points(path)
    assert rgb is None and xyz[:, 2].tolist() == [1.0, 2.0]


def test_writes_binary_little_endian_by_default(tmp_path):
    path = tmp_path / "out.ply"
    write_points(path, XYZ, RGB)
    data = path.read_bytes()
    header = (b"ply\nformat binary_little_endian 1.0\nelement vertex 3\n"
              b"property float x\nproperty float y\nproperty float z\n"
              b"property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n")
    assert data.startswith(header)
    body = np.zeros(3, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"),
                              ("blue", "u1")])
    for i, c in enumerate("xyz"):
        body[c] = XYZ[:, i]
    for i, c in enumerate(("red", "green", "blue")):
        body[c] = RGB[:, i]
    assert data[len(header):] == body.tobytes()
    assert not list(tmp_path.glob(".tmp-*"))  # written atomically, no temporary left


def test_writes_ascii_on_request(tmp_path):
    path = tmp_path / "out.ply"
    write_points(path, XYZ, RGB, binary=False)
    lines = path.read_text().splitlines()
    assert lines[:2] == ["ply", "format ascii 1.0"] and "end_header" in lines
    rows = [line.split() for line in lines[lines.index("end_header") + 1:]]
    assert len(rows) == 3
    got = np.array([[float(v) for v in row] for row in rows])
    np.testing.assert_allclose(got[:, :3], XYZ, rtol=1e-6)
    np.testing.assert_array_equal(got[:, 3:], RGB)


@pytest.mark.parametrize("binary", [True, False])
def test_round_trip(tmp_path, binary):
    rng = np.random.default_rng(0)
    xyz = rng.uniform(-5, 5, (1000, 3)).astype(np.float32)
    rgb = rng.integers(0, 256, (1000, 3))
    write_points(tmp_path / "r.ply", xyz, rgb, binary=binary)
    got_xyz, got_rgb = read_points(tmp_path / "r.ply")
    np.testing.assert_array_equal(got_xyz, xyz)
    np.testing.assert_array_equal(got_rgb, rgb)


def test_a_truncated_binary_file_names_the_file(tmp_path):
    path = tmp_path / "cut.ply"
    path.write_bytes(_header("binary_little_endian", 3, PROPS_F4) + _vertices("<").tobytes()[:-5])
    with pytest.raises(PlyError, match="cut.ply") as err:
        read_points(path)
    assert "end" in str(err.value).lower()


def test_a_truncated_ascii_file_names_the_file(tmp_path):
    path = tmp_path / "cut.ply"
    path.write_bytes(_header("ascii", 3, PROPS_F4) + b"0 0 0 9 1 2 3\n1 1 1 9 1 2\n")
    with pytest.raises(PlyError, match="cut.ply"):
        read_points(path)


def test_missing_z_names_the_file_and_the_property(tmp_path):
    arr = np.zeros(2, dtype=[("x", "<f4"), ("y", "<f4")])
    path = tmp_path / "flat.ply"
    path.write_bytes(_header("binary_little_endian", 2, ["float x", "float y"]) + arr.tobytes())
    with pytest.raises(PlyError, match=r"flat\.ply.*\bz\b"):
        read_points(path)


@pytest.mark.parametrize("content", [b"", b"hello\n", b"ply\nformat ascii 1.0\nelement face 0\nend_header\n"])
def test_not_a_point_ply_names_the_file(tmp_path, content):
    path = tmp_path / "bad.ply"
    path.write_bytes(content)
    with pytest.raises(PlyError, match="bad.ply"):
        read_points(path)


def test_a_ply_error_is_a_user_error():
    from t4p.errors import UserError

    assert issubclass(PlyError, UserError)


def test_predict_reads_binary_and_ascii_scenes(tmp_path):
    """``t4p predict``'s scene reader takes either PLY encoding (grey where a file has no colour)."""
    from t4p.commands.checkpoints import read_scene

    binary, text = tmp_path / "b.ply", tmp_path / "t.ply"
    write_points(binary, XYZ, RGB)
    write_points(text, XYZ, RGB, binary=False)
    for path in (binary, text):
        xyz, rgb = read_scene(path)
        np.testing.assert_allclose(xyz, XYZ, rtol=1e-6)
        np.testing.assert_array_equal(rgb, RGB)
    arr = np.zeros(2, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4")])
    plain = tmp_path / "plain.ply"
    plain.write_bytes(_header("binary_little_endian", 2, ["float x", "float y", "float z"]) + arr.tobytes())
    assert (read_scene(plain)[1] == 128).all()
