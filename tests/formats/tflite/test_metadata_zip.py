"""The labels zip appended to a .tflite is the same bytes whenever it is written, so converting the same weights
twice gives the same artifact (and the same sha256 in its manifest)."""

from __future__ import annotations

import io
import time
import zipfile

from edgeseg.formats.tflite.convert.metadata_writer import ZIP_EPOCH, associated_files_zip

FILES = {"labels.txt": b"background\ndisc\nbox\n"}


def test_the_zip_does_not_carry_the_time_of_writing(monkeypatch):
    first = associated_files_zip(FILES)
    monkeypatch.setattr(time, "time", lambda: 2_000_000_000.0)  # 2033: zipfile dates entries by time.time()
    later = associated_files_zip(FILES)
    assert later == first
    with zipfile.ZipFile(io.BytesIO(later)) as archive:
        (entry,) = archive.infolist()
        assert entry.date_time == ZIP_EPOCH and entry.compress_type == zipfile.ZIP_STORED
        assert archive.read("labels.txt") == FILES["labels.txt"]
