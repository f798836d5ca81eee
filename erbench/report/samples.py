"""What drift looks like: the same held-out prompts' responses, initial policy beside each run's (records' samples
files, written by erbench.results.RunRecord)."""

import json
from dataclasses import dataclass
from pathlib import Path

from erbench.errors import ErbenchError
from erbench.report.records import at_recipe_default
from erbench.results import read_record

SHOWN = ("reward", "reward_gold", "reward_second_rm", "bleu_en", "kl_to_init")  # per-sample numbers, when present
RENEW = "rerun it with this erbench (records written before samples existed have none)"


@dataclass
class Column:
    label: str  # "initial", "ppo seed0", ...
    samples: dict[int, dict]  # prompt index -> sample


def read_samples(record: dict) -> list[dict]:
    """The samples of a record read by erbench.results.read_record or report.records.read_records."""
    path = Path(record["path"])
    if "samples_file" not in record:
        raise ErbenchError(f"{path} has no samples", RENEW)
    file = path.with_name(record["samples_file"])
    try:
        return [json.loads(line) for line in file.read_text().splitlines()]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ErbenchError(f"cannot read the samples of {path}: {e}", f"restore {file} beside its record, or {RENEW}") from None


def pick(samples: list[dict], split: str, iteration: int | None) -> tuple[int, dict[int, dict]]:
    """The policy's samples of one evaluation: at `iteration`, or the last one of the split; (iteration, by index)."""
    evaluated = sorted({s["iteration"] for s in samples if s["split"] == split and s["model"] == "policy"})
    if not evaluated or (iteration is not None and iteration not in evaluated):
        where = f"iterations {', '.join(map(str, evaluated))}" if evaluated else "no evaluation"
        raise ErbenchError(f"no {split} samples at iteration {iteration if iteration is not None else 'final'} ({where} have them)",
                           "pick one of those with --iteration, or another --split")
    chosen = evaluated[-1] if iteration is None else iteration
    return chosen, {s["index"]: s for s in samples if s["split"] == split and s["model"] == "policy" and s["iteration"] == chosen}


def load(paths: list[Path]) -> list[dict]:
    fix = "pass completed run records (the .json files, not their .samples.jsonl)"
    return [{**read_record(path, fix), "path": str(path)} for path in paths]


def columns(records: list[dict], split: str, iteration: int | None) -> list[Column]:
    """The initial policy's responses (val iteration 0, once per seed: the evaluation seed follows the run's) and
    each record's at `iteration` (default: its last evaluation of the split)."""
    tasks = sorted({record["task"] for record in records})
    if len(tasks) > 1:
        raise ErbenchError(f"the records are of different tasks ({', '.join(tasks)}): their prompts differ",
                           "compare records of one task")
    labels = [f"{r['method']} seed{r['seed']}" for r in records]
    labels = [label if labels.count(label) == 1 else f"{label} ({Path(r['path']).stem})" for label, r in zip(labels, records)]
    initial, runs = {}, []
    for record, label in zip(records, labels):
        samples = read_samples(record)
        if split == "val" and iteration != 0:
            initial.setdefault(record["seed"], pick(samples, "val", 0)[1])
        chosen, picked = pick(samples, split, iteration)
        runs.append(Column(f"{label} @ {chosen}" if split == "val" else f"{label} ({split})", picked))
    seeds = sorted(initial)
    firsts = [Column("initial" if len(seeds) == 1 else f"initial seed{seed}", initial[seed]) for seed in seeds]
    every = firsts + runs
    for column in every[1:]:
        for index, sample in column.samples.items():
            prompt = every[0].samples.get(index, sample)["prompt"]
            if sample["prompt"] != prompt:
                raise ErbenchError(f"{column.label} saw another prompt #{index} than {every[0].label}",
                                   "compare records of one task and scale, with the same evaluation settings")
    return every


def comparison(records: list[dict], split: str = "val", iteration: int | None = None, n: int | None = None) -> list[tuple[str, list]]:
    """[(prompt, [(column label, sample or None)])] for the first n prompts every column shares."""
    every = columns(records, split, iteration)
    indices = sorted(set.intersection(*(set(column.samples) for column in every)))[:n]
    return [(every[0].samples[i]["prompt"], [(column.label, column.samples[i]) for column in every]) for i in indices]


def numbers(sample: dict) -> str:
    return ", ".join(f"{key} {sample[key]:.3g}" for key in SHOWN if key in sample)


def extra_texts(sample: dict) -> str:
    """Task-specific texts beside the response (the translation game's German and references)."""
    skip = {"iteration", "split", "model", "index", "prompt", "response", *SHOWN}
    return "; ".join(f"{key}: {value}" for key, value in sample.items() if key not in skip and isinstance(value, str))


def markdown(blocks: list[tuple[str, list]]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    parts = []
    for number, (prompt, rows) in enumerate(blocks, 1):
        lines = [f"**Prompt {number}:** {cell(prompt)}", "", "| policy | response | numbers |", "|---|---|---|"]
        for label, sample in rows:
            extra = extra_texts(sample)
            lines.append(f"| {cell(label)} | {cell(sample['response'])}{'<br>' + cell(extra) if extra else ''} | {numbers(sample)} |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def print_tables(blocks: list[tuple[str, list]], console) -> None:
    from rich.table import Table

    for number, (prompt, rows) in enumerate(blocks, 1):
        table = Table(title=f"Prompt {number}: {prompt}", title_justify="left", show_lines=True)
        for name, style in (("policy", "bold"), ("response", None), ("numbers", "dim")):
            table.add_column(name, style=style, overflow="fold")
        for label, sample in rows:
            extra = extra_texts(sample)
            table.add_row(label, sample["response"] + (f"\n[dim]{extra}[/dim]" if extra else ""), numbers(sample).replace(", ", "\n"))
        console.print(table)


def drift_examples(records: list[dict]) -> str:
    """The report's "what drift looks like": per task and scale, the first val prompt, the initial response and each
    method's final one, all from one seed (the one most methods have samples for, so they share the prompt and the
    initial response; recipe settings first). Records without samples (on disk) are left out."""
    with_samples = sorted((r for r in records if "samples_file" in r and Path(r["path"]).with_name(r["samples_file"]).exists()),
                          key=lambda r: (not at_recipe_default(r), r["seed"]))
    sections = []
    for task, scale in sorted({(r["task"], r["scale"]) for r in with_samples}):
        here = [r for r in with_samples if (r["task"], r["scale"]) == (task, scale)]
        seed = max(sorted({r["seed"] for r in here}), key=lambda s: len({r["method"] for r in here if r["seed"] == s}))
        chosen: dict[str, dict] = {}
        for record in here:
            if record["seed"] == seed:
                chosen.setdefault(record["method"], record)
        sections.append(f"#### {task} ({scale}), seed {seed}\n\n{markdown(comparison(list(chosen.values()), n=1))}")
    return "\n\n".join(sections)
