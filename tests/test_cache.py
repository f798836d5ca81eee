"""The prepared-asset cache: concurrent prepares build once and leave one intact folder, and a damaged one is a
one-line error."""

import multiprocessing
import time
from dataclasses import dataclass

import pytest
import torch

from conftest import FAST, assert_damaged_cache_is_one_line, sets, truncate
from erbench.tasks.base import Task


@dataclass(frozen=True)
class SlowConfig:
    size: int = 1000


class SlowAssets(Task):
    """A task whose build takes long enough for two builds to overlap."""
    name = "slow"
    asset_fields = ("size",)

    def build_assets(self, folder):
        with open(self.cache_dir / "builds.log", "a") as builds:
            builds.write(f"{multiprocessing.current_process().name}\n")
        time.sleep(1.0)
        (folder / "weights.bin").write_bytes(b"w" * self.cfg.size)
        return {"built_by": multiprocessing.current_process().name}


def prepare_in(cache, start, results):
    start.wait()
    results.put(SlowAssets(SlowConfig(), None, cache, torch.device("cpu")).prepare())


def test_two_prepares_at_once_build_once_and_leave_one_intact_folder(tmp_path):
    """The second waits for the first's build (a lock per asset key) and reuses it, as a sweep's runs on a cold cache do."""
    context = multiprocessing.get_context("fork")
    start, results = context.Barrier(2), context.Queue()
    workers = [context.Process(target=prepare_in, args=(tmp_path, start, results), name=f"p{i}") for i in range(2)]
    for worker in workers:
        worker.start()
    metas = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    assert len((tmp_path / "builds.log").read_text().splitlines()) == 1  # one build, not one each
    assert metas[0]["built_by"] == metas[1]["built_by"]  # the second returns the first's assets
    [folder] = list((tmp_path / "slow").iterdir())  # no leftover .tmp- folder, nor the build's lock file
    assert sorted(p.name for p in folder.iterdir()) == ["meta.json", "weights.bin"]
    assert (folder / "weights.bin").read_bytes() == b"w" * 1000


@pytest.mark.parametrize("damage, message", [
    (lambda assets: truncate(assets / "lm" / "model.safetensors"), "cannot load IMDB models"),
    (lambda assets: (assets / "tokenizer.json").unlink(), "tokenizer.json"),
    (lambda assets: (assets / "reward.npz").write_bytes(b"garbage"), "cannot read the tfidf classifier"),
])
def test_a_damaged_imdb_cache_is_one_line_naming_prepare_force(cache_dir, tmp_path, damage, message):
    assert_damaged_cache_is_one_line(cache_dir, "imdb", damage, ["--method", "elastic", *sets(*FAST)], message, tmp_path)
