"""S3DIS raw reader on the real fixture (written out as a raw Stanford room by the test)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from t4p.data.classes import S3DIS13
from t4p.data.s3dis import S3DISFormatError, list_rooms, read_room, split_rooms
from tests._data_helpers import layout_s3dis_room, s3dis_fixture


def test_raw_room_reads_back_the_fixture(shared_data, tmp_path):
    room_dir = layout_s3dis_room(shared_data, tmp_path)
    room = read_room(room_dir)
    pts, sem, ins, names = s3dis_fixture(shared_data)
    assert names == list(S3DIS13.names)
    assert room.area == 1 and room.name == "office_2" and len(room.xyz) == 100
    assert room.repaired == []
    # the reader groups points by annotation file; compare as sets of (xyz, rgb, class)
    got = sorted(zip(np.round(room.xyz, 4).tolist(), room.rgb.tolist(), room.labels.tolist(), strict=True))
    want = sorted(
        zip(np.round(pts[:, :3], 4).tolist(), pts[:, 3:].astype(int).tolist(), sem.tolist(), strict=True)
    )
    assert got == want
    # instances: same partition of the points as the fixture's instance mask
    key = {tuple(np.round(p[:3], 4)): k for p, k in zip(pts, ins, strict=True)}
    mapped = np.array([key[tuple(np.round(p, 4))] for p in room.xyz])
    for k in np.unique(room.instances):
        assert len(np.unique(mapped[room.instances == k])) == 1
    assert len(np.unique(room.instances)) == len(np.unique(ins))


def _write(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def test_hallway_6_style_typo_is_repaired_and_reported(tmp_path, caplog):
    ann = tmp_path / "Area_5" / "hallway_6" / "Annotations"
    good = ["1.000 2.000 3.000 10 20 30", "1.100 2.100 3.100 11 21 31"]
    _write(
        ann / "ceiling_1.txt", [*good, "19.302 -9.160 3.043 103.0\x100000 196 184", "1.2 2.2 3.2 12 22 32"]
    )
    _write(ann / "wall_1.txt", ["0 0 0 1 1 1", "0 1 0 2 2 2"])
    with caplog.at_level(logging.WARNING):
        room = read_room(ann.parent)
    assert room.area == 5 and len(room.xyz) == 6  # 4 ceiling (one repaired) + 2 wall
    assert room.repaired == [f"{ann / 'ceiling_1.txt'}:3"]
    np.testing.assert_allclose(room.xyz[2], [19.302, -9.16, 3.043], rtol=1e-6)
    assert room.rgb[2].tolist() == [103, 196, 184]
    assert "ceiling_1.txt:3: removed a control character" in caplog.text


def test_a_line_that_is_not_six_numbers_is_an_error_not_a_skip(tmp_path):
    ann = tmp_path / "Area_5" / "hallway_6" / "Annotations"
    _write(ann / "wall_1.txt", ["0 0 0 1 1 1", "0.5 0.5 bad 1 1", "0 1 0 2 2 2"])
    with pytest.raises(S3DISFormatError, match=r"wall_1\.txt:2: '0\.5 0\.5 bad 1 1' is not six numbers"):
        read_room(ann.parent)


def test_stairs_map_to_clutter_and_unknown_class_is_an_error(tmp_path):
    ann = tmp_path / "Area_2" / "stairs_room" / "Annotations"
    _write(ann / "stairs_1.txt", ["0 0 0 1 1 1"])
    assert read_room(ann.parent).labels.tolist() == [S3DIS13.index("clutter")]
    _write(ann / "sink_1.txt", ["0 0 0 1 1 1"])
    with pytest.raises(S3DISFormatError, match=r"sink_1\.txt: unknown class 'sink'"):
        read_room(ann.parent)


def test_area_splits_hold_out_area_5_and_a_validation_part_of_training_areas(tmp_path):
    rooms = [(a, tmp_path / f"Area_{a}" / f"office_{i}") for a in (1, 2, 3, 4, 5, 6) for i in range(3)]
    args = ((1, 2, 3, 4, 6), (), 5, 0.2)
    test = split_rooms(rooms, "test", *args)
    val = split_rooms(rooms, "val", *args)
    train = split_rooms(rooms, "train", *args)
    assert {a for a, _ in test} == {5} and len(test) == 3
    assert len(val) == 3 and not {r for _, r in val} & {r for _, r in train}
    assert len(train) + len(val) == 15 and 5 not in {a for a, _ in train + val}
    assert split_rooms(rooms, "val", (1, 2, 3, 4, 6), (6,), 5, 0.2) == rooms[15:]


def test_list_rooms_names_the_expected_layout(tmp_path):
    with pytest.raises(S3DISFormatError, match="Annotations"):
        list_rooms(tmp_path)
