"""Stack Exchange preference pairs (the StackLLaMA data) built from raw `Posts.xml` dumps.

Reproduces the `lvwerra/stack-exchange-paired` format the way it was built from
HuggingFaceH4/stack-exchange-preferences:
- each answer gets pm_score = round(log2(1 + Score)), +1 when it is the question's accepted answer;
  a negative Score gives -1 (accepted or not);
- every unordered pair of answers to one question with different pm_scores gives one row
  {question, response_j (higher pm_score), response_k (lower)};
- at most `max_pairs_per_question` pairs per question: when a question has more, a random subset is kept,
  drawn by `random.Random(f"{seed}/{question_id}")` and kept in enumeration order, so the choice for one
  question depends only on the seed and that question (not on which other sites or questions were read);
- question text = title + "\\n\\n" + body as plain text; SFT text = "Question: {question}\\n\\nAnswer: {answer}".

Splits are by question, so a question, its answers and its pairs never cross splits: a sha256 of
"<site>/<question Id>" gives a number in [0, 1) that falls into one of the named `fractions` (in their order).
Meta sites (policy questions about a site itself) all go to the out-of-domain split `ood`, never trained on.
The seed only picks pair subsets; the split of a question never changes with it.

Layout: `<root>/stackexchange/<site>/Posts.xml` (or `<root>/<site>/Posts.xml`). Reading streams each file
(`iterparse`, every row cleared after use). Malformed rows are counted per file (by reason) and skipped; a file
that stops being well-formed XML keeps the rows read before the error, records the error and the next file is
read. Answers without text (image-only, like the community ads on meta sites) are skipped and counted; answers
whose question is not in the file (partial dumps) are counted as orphans and pair with nothing.
Nothing is printed: counts come back in `StackExchangeData.stats`.
"""

import hashlib
import json
import math
import random
import re
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from functools import cached_property
from html.parser import HTMLParser
from itertools import combinations
from pathlib import Path

from erbench.errors import ErbenchError
from erbench.results import atomic_write

# The reward model needs the most pairs (its held-out accuracy is the first thing StackLLaMA checks, and a few
# thousand pairs are already few for it); SFT also learns from every answer of its questions, not only from pairs;
# RL needs only question prompts, and ~15% of the questions (~770) is plenty for the rollouts of a run; evaluation
# keeps 15% for held-out RM accuracy and RL evaluation prompts.
DEFAULT_FRACTIONS = {"finetune": 0.25, "reward": 0.45, "rl": 0.15, "evaluation": 0.15}
OOD_SPLIT = "ood"  # every question of a meta site
DATA_FIX = "pass --data-dir (or set ERBENCH_DATA) pointing at a folder holding stackexchange/<site>/Posts.xml"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"


def is_meta_site(site: str) -> bool:
    """`ai.meta.stackexchange.com`, `meta.mathoverflow.net`, ...: questions about the site itself."""
    return ".meta." in site or site.startswith("meta.")


def pm_score(score: int, accepted: bool) -> int:
    """The preference-model score of an answer (HuggingFaceH4/stack-exchange-preferences)."""
    if score < 0:
        return -1
    return round(math.log2(1 + score)) + int(accepted)


def sft_text(question: str, answer: str) -> str:
    return f"Question: {question}\n\nAnswer: {answer}"


# ---------------------------------------------------------------- HTML bodies to plain text

PARAGRAPH_TAGS = {"p", "div", "pre", "blockquote", "h1", "h2", "h3", "h4", "h5", "h6", "table", "hr", "dl"}
LINE_TAGS = {"br", "tr", "dt", "dd"}
LIST_TAGS = {"ul", "ol"}
CELL_TAGS = {"td", "th"}
VERBATIM_TAGS = {"pre", "code"}
HIDDEN_TAGS = {"script", "style"}
WHITESPACE = re.compile(r"[ \t\r\n\f\v]+")
BLANK_LINES = re.compile(r"\n\s*\n")


class _TextExtractor(HTMLParser):
    """Writes text as it comes; block tags ask for 1 (line) or 2 (paragraph) newlines before the next text."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.pending_newlines = 0
        self.space_before = True  # the output ends in whitespace (or is empty): drop leading spaces of new text
        self.after_bullet = False  # only a "- " since the item began: a <p> inside the <li> must not break the line
        self.after_item = False  # nothing written since a </li>: the next item or nested list starts on the next line
        self.verbatim = self.hidden = self.lists = 0  # depths

    def handle_starttag(self, tag, attrs):
        if tag in HIDDEN_TAGS:
            self.hidden += 1
        elif tag == "li":
            self._break(1, tight=self.after_item)
            self._write("  " * max(self.lists - 1, 0) + "- ")
            self.after_bullet = True
        elif tag in LIST_TAGS:
            self._break(2 if self.lists == 0 else 1, tight=self.lists > 0)
            self.lists += 1
            self.after_item = False
        elif tag in PARAGRAPH_TAGS:
            self._break(2)
        elif tag in LINE_TAGS:
            self._break(1)
        if tag in VERBATIM_TAGS:
            self.verbatim += 1

    def handle_endtag(self, tag):
        if tag in HIDDEN_TAGS:
            self.hidden = max(self.hidden - 1, 0)
        elif tag == "li":
            self._break(1)
            self.after_item = True
        elif tag in LIST_TAGS:
            self.lists = max(self.lists - 1, 0)
            self._break(2 if self.lists == 0 else 1)
            self.after_item = False
        elif tag in PARAGRAPH_TAGS:
            self._break(2)
        elif tag in CELL_TAGS:
            self.handle_data(" ")  # keep table cells apart
        if tag in VERBATIM_TAGS:
            self.verbatim = max(self.verbatim - 1, 0)

    def handle_data(self, data):
        if self.hidden or not data:
            return
        if not self.verbatim:
            data = WHITESPACE.sub(" ", data.replace("\xa0", " "))
            if self.space_before or self.pending_newlines:
                data = data.lstrip(" ")
            if not data:
                return
        self._write(data)

    def _break(self, newlines: int, tight: bool = False):
        """Ask for `newlines` before the next text; `tight`: exactly that many (list items of loose lists,
        whose <p> would otherwise leave a blank line between items)."""
        if tight:
            self.pending_newlines = newlines
        elif not self.after_bullet:
            self.pending_newlines = max(self.pending_newlines, newlines)

    def _write(self, text: str):
        if self.pending_newlines:
            while self.parts and not self.parts[-1].strip():
                self.parts.pop()
            if self.parts:
                self.parts[-1] = self.parts[-1].rstrip()
                self.parts.append("\n" * self.pending_newlines)
            self.pending_newlines = 0
        self.parts.append(text)
        self.space_before = text[-1].isspace()
        self.after_bullet = self.after_item = False

    def text(self) -> str:
        return BLANK_LINES.sub("\n\n", "".join(self.parts)).strip()


def html_to_text(html: str) -> str:
    """A Stack Exchange HTML body as plain text: paragraphs and line breaks kept, list items as "- ",
    code verbatim, entities unescaped, runs of blank lines collapsed to one."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    return parser.text()


# ---------------------------------------------------------------- reading one Posts.xml


@dataclass
class Question:
    id: int
    title: str
    body: str  # plain text
    accepted_answer_id: int | None

    @property
    def text(self) -> str:
        return f"{self.title}\n\n{self.body}" if self.body else self.title


@dataclass
class Answer:
    id: int
    parent_id: int
    score: int
    body: str  # plain text


@dataclass
class FileStats:
    site: str
    path: str
    rows: int = 0
    questions: int = 0
    answers: int = 0  # with text
    other_rows: int = 0  # tag wikis and other post types, skipped
    empty_answers: int = 0  # answers without text (image-only, e.g. meta sites' community ads), skipped
    malformed: dict[str, int] = field(default_factory=dict)  # reason -> rows skipped
    orphan_answers: int = 0  # answers whose question is not in the file (partial dumps); no pairs
    parse_error: str | None = None  # the file stops being well-formed XML here; rows before it are kept

    @property
    def malformed_rows(self) -> int:
        return sum(self.malformed.values())


class _MalformedRow(Exception):
    pass


def _int_attribute(row: dict, name: str, required: bool = True) -> int | None:
    value = row.get(name)
    if value is None:
        if required:
            raise _MalformedRow(f"missing {name}")
        return None
    try:
        return int(value)
    except ValueError:
        raise _MalformedRow(f"non-integer {name}") from None


def _parse_row(row: dict, seen_ids: set[int]) -> Question | Answer | None:
    """A question, an answer, or None for other post types; raises _MalformedRow naming the reason."""
    post_id = _int_attribute(row, "Id")
    post_type = _int_attribute(row, "PostTypeId")
    if post_id in seen_ids:
        raise _MalformedRow("duplicate Id")
    if post_type == 1:
        _int_attribute(row, "Score")
        accepted = _int_attribute(row, "AcceptedAnswerId", required=False)
        title = row.get("Title", "").strip()
        if not title:
            raise _MalformedRow("missing Title")
        post = Question(post_id, title, html_to_text(row.get("Body", "")), accepted)
    elif post_type == 2:
        parent_id = _int_attribute(row, "ParentId")
        score = _int_attribute(row, "Score")
        post = Answer(post_id, parent_id, score, html_to_text(row.get("Body", "")))
    else:
        post = None
    seen_ids.add(post_id)
    return post


def read_posts(path: str | Path) -> tuple[dict[int, Question], list[Answer], FileStats]:
    """Stream one Posts.xml: questions by Id and answers, both in file order, and the file's counts."""
    path = Path(path)
    stats = FileStats(site=path.parent.name, path=str(path))
    questions: dict[int, Question] = {}
    answers: list[Answer] = []
    malformed: Counter[str] = Counter()
    seen_ids: set[int] = set()
    with open(path, "rb") as source:
        root = None
        try:
            for event, element in ET.iterparse(source, events=("start", "end")):
                if root is None:
                    root = element  # <posts>
                elif event == "end" and element.tag == "row":
                    stats.rows += 1
                    try:
                        post = _parse_row(element.attrib, seen_ids)
                    except _MalformedRow as reason:
                        malformed[str(reason)] += 1
                    else:
                        if isinstance(post, Question):
                            questions[post.id] = post
                        elif isinstance(post, Answer) and not post.body:
                            stats.empty_answers += 1
                        elif isinstance(post, Answer):
                            answers.append(post)
                        else:
                            stats.other_rows += 1
                    element.clear()
                    root.clear()  # drop finished rows from the tree: memory stays flat
        except ET.ParseError as error:
            stats.parse_error = str(error)
    stats.questions, stats.answers = len(questions), len(answers)
    stats.malformed = dict(sorted(malformed.items()))
    stats.orphan_answers = sum(answer.parent_id not in questions for answer in answers)
    return questions, answers, stats


# ---------------------------------------------------------------- pairs and splits


@dataclass
class ScoredAnswer:
    id: int
    text: str
    score: int  # raw Score (upvotes minus downvotes)
    accepted: bool
    pm_score: int


@dataclass
class Thread:
    """A question with all its scored answers (file order) and its kept preference pairs."""

    question_id: str  # "<site>/<Id>"
    site: str
    question: str
    answers: list[ScoredAnswer]
    pairs: list[tuple[int, int]]  # (better, worse) indices into `answers`

    def sft_texts(self) -> list[str]:
        return [sft_text(self.question, answer.text) for answer in self.answers]


@dataclass(frozen=True)
class Pair:
    """One row of lvwerra/stack-exchange-paired: response_j has the higher pm_score."""

    question_id: str
    site: str
    question: str
    response_j: str
    response_k: str
    score_j: int
    score_k: int


@dataclass
class Split:
    name: str
    threads: list[Thread]

    @cached_property
    def pairs(self) -> list[Pair]:
        return [Pair(thread.question_id, thread.site, thread.question, thread.answers[j].text, thread.answers[k].text,
                     thread.answers[j].pm_score, thread.answers[k].pm_score)
                for thread in self.threads for j, k in thread.pairs]

    def sft_texts(self) -> list[str]:
        """"Question: ...\n\nAnswer: ..." for every answer of every question of the split."""
        return [text for thread in self.threads for text in thread.sft_texts()]


@dataclass
class SplitStats:
    questions: int
    answers: int
    pairs: int


@dataclass
class BuildStats:
    files: list[FileStats]
    splits: dict[str, SplitStats]

    @property
    def malformed_rows(self) -> int:
        return sum(f.malformed_rows for f in self.files)

    @property
    def parse_errors(self) -> int:
        return sum(f.parse_error is not None for f in self.files)


def preference_pairs(pm_scores: list[int], max_pairs: int | None, rng: random.Random) -> list[tuple[int, int]]:
    """(better, worse) index pairs of answers with different pm_scores, in enumeration order; a random
    subset of `max_pairs` of them when there are more (None: all)."""
    pairs = [(a, b) if pm_scores[a] > pm_scores[b] else (b, a)
             for a, b in combinations(range(len(pm_scores)), 2) if pm_scores[a] != pm_scores[b]]
    if max_pairs is not None and len(pairs) > max_pairs:
        pairs = [pairs[i] for i in sorted(rng.sample(range(len(pairs)), max_pairs))]
    return pairs


def split_of(site: str, question_id: int, fractions: dict[str, float]) -> str:
    """The split of a question: `ood` for meta sites, else a stable hash bucket mapped onto `fractions`."""
    if is_meta_site(site):
        return OOD_SPLIT
    digest = hashlib.sha256(f"{site}/{question_id}".encode()).digest()
    position = int.from_bytes(digest[:8], "big") / 2**64  # uniform in [0, 1)
    cumulative = 0.0
    for name, fraction in fractions.items():
        cumulative += fraction
        if position < cumulative:
            return name
    return name  # float rounding at the top end: the last split


def _check_fractions(fractions: dict[str, float]) -> dict[str, float]:
    if not fractions or OOD_SPLIT in fractions or any(f < 0 for f in fractions.values()) \
            or abs(sum(fractions.values()) - 1) > 1e-6:
        raise ErbenchError(f"bad Stack Exchange split fractions {fractions}",
                           f"give non-negative fractions summing to 1 for splits other than '{OOD_SPLIT}'")
    return dict(fractions)


def find_posts_files(root: str | Path, sites: list[str] | None = None) -> dict[str, Path]:
    """site -> Posts.xml under `root/stackexchange` (or under `root` itself), sorted by site."""
    root = Path(root)
    folder = root / "stackexchange" if (root / "stackexchange").is_dir() else root
    if not folder.is_dir():
        raise ErbenchError(f"Stack Exchange data folder {root} not found", DATA_FIX)
    found = {path.parent.name: path for path in sorted(folder.glob("*/Posts.xml"))}
    if not found:
        raise ErbenchError(f"no <site>/Posts.xml found under {folder}", DATA_FIX)
    if sites is None:
        return found
    missing = sorted(set(sites) - set(found))
    if missing:
        raise ErbenchError(f"no Posts.xml for {', '.join(missing)} under {folder}", f"choose among {', '.join(found)}")
    return {site: found[site] for site in sorted(set(sites))}


@dataclass
class StackExchangeData:
    """Per split the questions with their answers (`threads`) and the preference `pairs`; `params` are the
    build arguments (a cache key), `stats` the counts per file and per split."""

    splits: dict[str, Split]
    stats: BuildStats
    params: dict

    def __getitem__(self, split: str) -> Split:
        return self.splits[split]

    def save(self, folder: str | Path) -> None:
        """One `<split>.jsonl` per split (a question per line) and `manifest.json`, each written atomically;
        the manifest goes last, so a folder with a manifest is complete."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name, split in self.splits.items():
            atomic_write(folder / f"{name}.jsonl",
                         (json.dumps(asdict(thread), ensure_ascii=False) + "\n" for thread in split.threads))
        manifest = {"format": FORMAT_VERSION, "params": self.params, "stats": asdict(self.stats)}
        atomic_write(folder / MANIFEST, json.dumps(manifest, indent=1))

    @classmethod
    def load(cls, folder: str | Path) -> "StackExchangeData":
        folder = Path(folder)
        fix = f"delete {folder} so that the Stack Exchange pairs are built again"
        try:
            manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise ErbenchError(f"no readable {MANIFEST} in {folder} ({error})", fix) from None
        if manifest.get("format") != FORMAT_VERSION:
            raise ErbenchError(f"{folder} holds Stack Exchange data of format {manifest.get('format')}", fix)
        stats = BuildStats(files=[FileStats(**f) for f in manifest["stats"]["files"]],
                           splits={name: SplitStats(**s) for name, s in manifest["stats"]["splits"].items()})
        splits = {}
        for name, expected in stats.splits.items():
            with open(folder / f"{name}.jsonl", encoding="utf-8") as lines:
                threads = [_thread_from_dict(json.loads(line)) for line in lines]
            if len(threads) != expected.questions:
                raise ErbenchError(f"{folder / name}.jsonl has {len(threads)} questions, its manifest "
                                   f"{expected.questions}", fix)
            splits[name] = Split(name, threads)
        return cls(splits, stats, manifest["params"])


def _thread_from_dict(row: dict) -> Thread:
    return Thread(row["question_id"], row["site"], row["question"], [ScoredAnswer(**a) for a in row["answers"]],
                  [tuple(pair) for pair in row["pairs"]])


def build_pairs(root: str | Path, fractions: dict[str, float] | None = None, max_pairs_per_question: int | None = 10,
                seed: int = 0, sites: list[str] | None = None) -> StackExchangeData:
    """Read every `<site>/Posts.xml` under `root` (or only `sites`) and build the splits: `fractions`' names
    for main sites (default DEFAULT_FRACTIONS), `ood` for meta sites. Every question is kept (with its
    possibly empty list of answers); `max_pairs_per_question=None` keeps all pairs."""
    fractions = _check_fractions(DEFAULT_FRACTIONS if fractions is None else fractions)
    if max_pairs_per_question is not None and max_pairs_per_question < 1:
        raise ErbenchError(f"max_pairs_per_question={max_pairs_per_question}", "give at least 1 (or None for all)")
    threads: dict[str, list[Thread]] = {name: [] for name in [*fractions, OOD_SPLIT]}
    file_stats = []
    for site, path in find_posts_files(root, sites).items():
        questions, answers, stats = read_posts(path)
        file_stats.append(stats)
        answers_of = defaultdict(list)
        for answer in answers:
            answers_of[answer.parent_id].append(answer)
        for question in questions.values():
            question_id = f"{site}/{question.id}"
            scored = [ScoredAnswer(a.id, a.body, a.score, a.id == question.accepted_answer_id,
                                   pm_score(a.score, a.id == question.accepted_answer_id))
                      for a in answers_of[question.id]]
            pairs = preference_pairs([a.pm_score for a in scored], max_pairs_per_question,
                                     random.Random(f"{seed}/{question_id}"))
            threads[split_of(site, question.id, fractions)].append(
                Thread(question_id, site, question.text, scored, pairs))
    splits = {name: Split(name, split_threads) for name, split_threads in threads.items()}
    split_stats = {name: SplitStats(questions=len(split.threads), answers=sum(len(t.answers) for t in split.threads),
                                    pairs=sum(len(t.pairs) for t in split.threads)) for name, split in splits.items()}
    params = {"fractions": fractions, "max_pairs_per_question": max_pairs_per_question, "seed": seed,
              "sites": sorted(set(sites)) if sites is not None else None}
    return StackExchangeData(splits, BuildStats(file_stats, split_stats), params)
