"""Run records on disk: a full disk keeps the last complete record and says so in one line."""

import errno
import json
import os

import pytest

from erbench.errors import ErbenchError
from erbench.results import atomic_write_json, check_writable


def test_a_full_disk_keeps_the_last_complete_record_and_names_it(tmp_path, monkeypatch):
    path = tmp_path / "run.json"
    atomic_write_json(path, {"status": "running", "iteration": 3})

    def disk_full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", disk_full)  # the kernel's answer when the disk fills during the write
    with pytest.raises(ErbenchError, match="no space left on the disk") as error:
        atomic_write_json(path, {"status": "running", "iteration": 4})
    assert "run.json keeps its last complete version" in str(error.value)
    assert json.loads(path.read_text()) == {"status": "running", "iteration": 3}
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]  # no temporary file left behind


def test_an_unwritable_folder_is_refused_before_any_work(tmp_path):
    check_writable(tmp_path / "new" / "runs")  # created
    assert (tmp_path / "new" / "runs").is_dir() and not list((tmp_path / "new" / "runs").iterdir())
    (tmp_path / "file").write_text("")
    with pytest.raises(ErbenchError, match="cannot write run records to"):
        check_writable(tmp_path / "file" / "runs")
