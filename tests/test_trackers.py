"""--report-to: each tracker writes its real files, read back with the backend's own reader."""

import json
import os
import sqlite3
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from erbench.errors import ErbenchError
from erbench.trackers import TRACKERS, Tracker, markdown_table, open_tracker

CONFIG = {"task": "imdb", "method": "elastic-reset", "scale": "tiny", "seed": 0,
          "train": {"iterations": 3, "lr": 1e-5, "eval_ema": True, "target_kl": None},
          "method_config": {"reset_every": 2, "ema_decay": 0.995}}
TRAIN = [{"iteration": i, "score": 0.1 * i, "kl": 0.5 * i, "kl_coef": 0.2, "policy_loss": -0.01, "value_loss": 0.3,
          "clip_fraction": 0.1, "listener_loss": 1.5, "note": "text is skipped", "nan_stat": float("nan"),
          "reset": i == 2} for i in (1, 2, 3)]
EVALS = [(0, 0.25), (3, 0.75)]  # (iteration, eval/reward)


def samples(iteration: int) -> list[dict]:
    return [{"index": 0, "prompt": "The film was", "response": f"wonderful | step {iteration}\nsecond line",
             "reward": 0.9, "reward_gold": 0.8, "kl_to_init": 0.05, "model": "policy"},
            {"index": 0, "prompt": "The film was", "response": f"ema says fine {iteration}", "reward": 0.7,
             "kl_to_init": 0.01, "model": "ema"}]


def feed(tracker: Tracker) -> None:
    """A run's calls in the runner's order: evaluate, then iterations with an evaluation after the last."""
    tracker.log_eval(0, {"reward": EVALS[0][1], "perplexity": 40.0, "kl_to_init": 0.0, "distinct_1": 0.6},
                     {"reward": 0.2}, samples(0))
    for stats in TRAIN:
        tracker.log_train(stats)
    tracker.log_eval(3, {"reward": EVALS[1][1], "perplexity": 42.0, "kl_to_init": 1.2, "reward_stderr": float("inf")},
                     {"reward": 0.6, "kl_to_init": 0.4}, samples(3))
    tracker.close()


def test_unknown_tracker_is_a_one_line_error(tmp_path):
    with pytest.raises(ErbenchError) as error:
        open_tracker("mlflow", tmp_path, "run", "group", CONFIG)
    assert "\n" not in str(error.value) and all(kind in str(error.value) for kind in TRACKERS)


def test_missing_package_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "trackio", None)  # as if not installed: importing it raises ImportError
    with pytest.raises(ErbenchError, match=r"pip install 'erbench\[trackio\]'"):
        open_tracker("trackio", tmp_path, "run", "group", CONFIG)


def test_none_writes_nothing(tmp_path):
    feed(open_tracker("none", tmp_path, "run", "group", CONFIG))
    assert list(tmp_path.iterdir()) == []


def test_markdown_cells_keep_their_row():
    table = markdown_table(samples(3))
    assert table.count("\n") == 3  # header, rule, two samples
    assert "wonderful \\| step 3<br>second line" in table


def test_tensorboard(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import metadata

    feed(open_tracker("tensorboard", tmp_path, "imdb-elastic-reset-seed0", "imdb-elastic-reset", CONFIG))
    run_dir = tmp_path / "imdb-elastic-reset-seed0"
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()

    def curve(tag):
        return [(e.step, round(e.value, 4)) for e in events.Scalars(tag)]

    assert curve("objective/kl") == [(1, 0.5), (2, 1.0), (3, 1.5)]
    assert curve("objective/scores")[-1] == (3, 0.3)
    assert curve("er/resets") == [(1, 0), (2, 1), (3, 1)]
    assert curve("eval/reward") == [(0, 0.25), (3, 0.75)]
    assert curve("eval_ema/kl_to_init") == [(3, 0.4)]
    tags = events.Tags()["scalars"]
    assert {"loss/policy_avg", "loss/value_avg", "policy/clipfrac_avg", "objective/kl_coef", "train/listener_loss",
            "eval/perplexity"} <= set(tags)
    assert not {"train/note", "train/nan_stat", "train/reset", "train/iteration", "eval/reward_stderr"} & set(tags)

    texts = {e.step: e.tensor_proto.string_val[0].decode() for e in events.Tensors("eval/samples/text_summary")}
    assert sorted(texts) == [0, 3]
    assert "wonderful \\| step 3<br>second line" in texts[3] and "ema says fine 3" in texts[3]
    config_text = events.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert json.loads(config_text.removeprefix("```json\n").removesuffix("\n```")) == CONFIG
    start = metadata.parse_session_start_info_plugin_data(events.SummaryMetadata("_hparams_/session_start_info")
                                                          .plugin_data.content)
    assert start.hparams["method_config.reset_every"].number_value == 2
    assert start.hparams["train.target_kl"].string_value == "None"
    assert len(list(tmp_path.iterdir())) == 1  # the hparams live in the run's folder, not a sibling run


def wandb_records(path: Path):
    """The protobuf records of a .wandb transaction log: W&B's 7-byte header, then LevelDB's log format
    (32 KiB blocks of chunks, each with a 7-byte header: crc, length, type 1 full / 2 first / 3 middle / 4 last)."""
    from wandb.proto import wandb_internal_pb2

    raw, pos, record = path.read_bytes(), 7, b""
    assert raw[:4] == b":W&B"
    while pos + 7 <= len(raw):
        if 32768 - pos % 32768 < 7:  # a block's tail too short for a chunk header is padding
            pos += 32768 - pos % 32768
            continue
        _, length, kind = struct.unpack("<IHB", raw[pos:pos + 7])
        if pos + 7 + length > len(raw):
            return  # a chunk still being written
        chunk, pos = raw[pos + 7:pos + 7 + length], pos + 7 + length
        record = chunk if kind in (1, 2) else record + chunk
        if kind in (1, 4):
            yield wandb_internal_pb2.Record.FromString(record)


def test_wandb_offline_by_default(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    for name in ("WANDB_MODE", "WANDB_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    for name in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(name, str(tmp_path / name.lower()))
    monkeypatch.setenv("WANDB_SILENT", "true")

    feed(open_tracker("wandb", tmp_path / "logs", "imdb-elastic-reset-seed0", "imdb-elastic-reset", CONFIG))
    [run_dir] = (tmp_path / "logs" / "wandb").glob("offline-run-*")
    [log] = run_dir.glob("run-*.wandb")
    # wandb-core writes the log in its own process: finish() can return before the last records reach the disk
    deadline = time.monotonic() + 60
    while not any(r.HasField("exit") for r in wandb_records(log)) and time.monotonic() < deadline:
        time.sleep(0.5)
    rows, run = {}, None
    for record in wandb_records(log):
        if record.HasField("run"):
            run = record.run
        if record.HasField("history"):
            row = {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
            rows[row["_step"]] = row
    assert (run.display_name, run.run_group, run.project) == ("imdb-elastic-reset-seed0", "imdb-elastic-reset",
                                                              "erbench")
    assert json.loads({u.key: u.value_json for u in run.config.update}["train"])["lr"] == 1e-5
    assert sorted(rows) == [0, 1, 2, 3]  # iteration 3's train stats and evaluation share a row
    assert [rows[s]["objective/kl"] for s in (1, 2, 3)] == [0.5, 1.0, 1.5]
    assert [rows[s]["er/resets"] for s in (1, 2, 3)] == [0, 1, 1]
    assert (rows[0]["eval/reward"], rows[3]["eval/reward"], rows[3]["eval_ema/reward"]) == (0.25, 0.75, 0.6)
    assert "eval/reward_stderr" not in rows[3] and "train/note" not in rows[1]
    table = json.loads((run_dir / "files" / rows[3]["eval/samples/path"]).read_text())
    responses = [row[table["columns"].index("response")] for row in table["data"]]
    assert responses == ["wonderful | step 3\nsecond line", "ema says fine 3"]


def test_trackio_local(tmp_path):
    pytest.importorskip("trackio")
    # trackio reads TRACKIO_DIR once, at import: a fresh interpreter points it at tmp_path whatever imported it here
    script = ("import sys; sys.path.insert(0, sys.argv[1]); from pathlib import Path; from test_trackers import *; "
              "feed(open_tracker('trackio', Path(sys.argv[2]), 'imdb-elastic-reset-seed0', 'imdb-elastic-reset', "
              "CONFIG))")
    env = {**os.environ, "TRACKIO_DIR": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    for name in ("TRACKIO_SPACE_ID", "TRACKIO_SERVER_URL"):
        env.pop(name, None)
    done = subprocess.run([sys.executable, "-c", script, str(Path(__file__).parent), str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr

    with sqlite3.connect(tmp_path / "erbench.db") as db:
        logged = [(step, json.loads(metrics)) for step, metrics in
                  db.execute("SELECT step, metrics FROM metrics WHERE run_name = ? ORDER BY id",
                             ("imdb-elastic-reset-seed0",))]
        [(config,)] = db.execute("SELECT config FROM configs WHERE run_name = ?", ("imdb-elastic-reset-seed0",))
    scalar = {(step, key): value for step, metrics in logged for key, value in metrics.items()}
    assert [scalar[s, "objective/kl"] for s in (1, 2, 3)] == [0.5, 1.0, 1.5]
    assert [scalar[s, "er/resets"] for s in (1, 2, 3)] == [0, 1, 1]
    assert (scalar[0, "eval/reward"], scalar[3, "eval/reward"], scalar[3, "eval_ema/kl_to_init"]) == (0.25, 0.75, 0.4)
    assert (3, "eval/reward_stderr") not in scalar and (1, "train/note") not in scalar
    table = scalar[3, "eval/samples"]
    assert table["_type"] == "trackio.table"
    assert [row["response"] for row in table["_value"]] == ["wonderful | step 3\nsecond line", "ema says fine 3"]
    config = json.loads(config)
    assert config["train"]["lr"] == 1e-5 and config["_Group"] == "imdb-elastic-reset"
