"""Stack Exchange preference pairs: pm_score, HTML to text, pair construction, malformed input, splits, cache."""

import pytest

from conftest import DATA_DIR
from erbench.errors import ErbenchError
from erbench.tasks.stack_exchange import (OOD_SPLIT, StackExchangeData, build_pairs, html_to_text, is_meta_site,
                                          pm_score, read_posts, split_of)

SITE = "tiny.stackexchange.com"
# The HTML body as the dump stores it: escaped into an attribute (&lt;p&gt;, &amp;amp;, &#xA; newlines).
QUESTION_BODY = ("&lt;p&gt;I tried &lt;code&gt;for x in y&lt;/code&gt; &amp;amp; it failed:&lt;/p&gt;&#xA;&#xA;"
                 "&lt;pre&gt;&lt;code&gt;for x in y:&#xA;    print(x &amp;lt; 2)&#xA;"
                 "&lt;/code&gt;&lt;/pre&gt;&#xA;&#xA;&lt;ul&gt;&#xA;&lt;li&gt;one&lt;/li&gt;&#xA;"
                 "&lt;li&gt;two &amp;amp; three&lt;/li&gt;&#xA;&lt;/ul&gt;&#xA;")
QUESTION_TEXT = "How to loop & print?\n\nI tried for x in y & it failed:\n\nfor x in y:\n    print(x < 2)\n\n- one\n- two & three"
ROWS = [
    f'<row Id="1" PostTypeId="1" AcceptedAnswerId="3" Score="5" Title="How to loop &amp; print?" Body="{QUESTION_BODY}" />',
    '<row Id="2" PostTypeId="2" ParentId="1" Score="7" Body="&lt;p&gt;seven&lt;/p&gt;" />',  # pm 3
    '<row Id="3" PostTypeId="2" ParentId="1" Score="1" Body="&lt;p&gt;accepted&lt;/p&gt;" />',  # pm 1 + 1
    '<row Id="4" PostTypeId="2" ParentId="1" Score="-2" Body="&lt;p&gt;negative&lt;/p&gt;" />',  # pm -1
    '<row Id="5" PostTypeId="2" ParentId="1" Score="0" Body="&lt;p&gt;zero&lt;/p&gt;" />',  # pm 0
    '<row Id="6" PostTypeId="1" Score="1" Title="Ties" Body="&lt;p&gt;Which?&lt;/p&gt;" />',
    '<row Id="7" PostTypeId="2" ParentId="6" Score="2" Body="&lt;p&gt;two&lt;/p&gt;" />',  # pm round(1.58) = 2
    '<row Id="8" PostTypeId="2" ParentId="6" Score="3" Body="&lt;p&gt;three&lt;/p&gt;" />',  # pm 2: a tie, no pair
    '<row Id="9" PostTypeId="2" ParentId="6" Score="many" Body="&lt;p&gt;bad&lt;/p&gt;" />',  # malformed
    '<row Id="10" PostTypeId="2" Score="4" Body="&lt;p&gt;orphan&lt;/p&gt;" />',  # malformed: no ParentId
    '<row PostTypeId="2" ParentId="1" Score="4" Body="&lt;p&gt;no id&lt;/p&gt;" />',  # malformed: no Id
    '<row Id="11" PostTypeId="4" Body="&lt;p&gt;a tag wiki&lt;/p&gt;" />',
]


def write_posts(root, site, rows, tail="</posts>\r\n"):
    folder = root / "stackexchange" / site
    folder.mkdir(parents=True)
    text = '<?xml version="1.0" encoding="utf-8"?>\r\n<posts>\r\n' + "".join(f"  {r}\r\n" for r in rows) + tail
    (folder / "Posts.xml").write_bytes(b"\xef\xbb\xbf" + text.encode())
    return folder / "Posts.xml"


def all_pairs(data):
    return [pair for split in data.splits.values() for pair in split.pairs]


def test_pm_score():
    assert [pm_score(s, False) for s in (-5, -1, 0, 1, 2, 3, 4, 7, 100)] == [-1, -1, 0, 1, 2, 2, 2, 3, 7]
    assert pm_score(1, True) == 2 and pm_score(0, True) == 1 and pm_score(-3, True) == -1


def test_html_to_text():
    html = ("<p>Use &lt;b&gt; &amp;&nbsp;this:</p>\n\n<pre><code>x = 1\nif x &lt; 2:\n\n\n    print(x)\n</code></pre>\n"
            "<ul>\n<li>one</li>\n<li>two <code>a  b</code><ul><li>inner</li></ul></li>\n<li><p>loose</p></li>\n</ul>\n"
            "<blockquote>\n  <p>quoted<br>line</p>\n</blockquote>\n\n\n<h2>Head</h2><p>end</p>")
    assert html_to_text(html) == ("Use <b> & this:\n\nx = 1\nif x < 2:\n\n    print(x)\n\n- one\n- two a  b\n  - inner\n"
                                  "- loose\n\nquoted\nline\n\nHead\n\nend")
    assert html_to_text("") == "" and html_to_text("<p>  </p><img src='x.png'>") == ""


def test_meta_sites():
    assert is_meta_site("ai.meta.stackexchange.com") and is_meta_site("meta.mathoverflow.net")
    assert not is_meta_site("ai.stackexchange.com") and not is_meta_site("metallurgy.stackexchange.com")


def test_pairs_from_a_handmade_dump(tmp_path):
    write_posts(tmp_path, SITE, ROWS)
    data = build_pairs(tmp_path, fractions={"reward": 1.0})
    assert set(data.splits) == {"reward", OOD_SPLIT}
    pairs = data["reward"].pairs
    assert [(p.response_j, p.response_k, p.score_j, p.score_k) for p in pairs] == [
        ("seven", "accepted", 3, 2), ("seven", "negative", 3, -1), ("seven", "zero", 3, 0),
        ("accepted", "negative", 2, -1), ("accepted", "zero", 2, 0), ("zero", "negative", 0, -1)]
    assert {(p.question_id, p.site, p.question) for p in pairs} == {(f"{SITE}/1", SITE, QUESTION_TEXT)}
    ties = data["reward"].threads[1]
    assert ties.question_id == f"{SITE}/6" and [a.pm_score for a in ties.answers] == [2, 2] and ties.pairs == []
    assert data["reward"].sft_texts()[0] == f"Question: {QUESTION_TEXT}\n\nAnswer: seven"

    [stats] = data.stats.files
    assert stats.malformed == {"missing Id": 1, "missing ParentId": 1, "non-integer Score": 1}
    assert (stats.rows, stats.questions, stats.answers, stats.other_rows, stats.parse_error) == (12, 2, 6, 1, None)
    assert data.stats.splits["reward"].pairs == 6 and data.stats.splits[OOD_SPLIT].questions == 0


def test_pair_cap_is_a_seeded_subset_in_order(tmp_path):
    write_posts(tmp_path, SITE, ROWS)
    everything = [(p.response_j, p.response_k) for p in build_pairs(tmp_path, {"reward": 1.0})["reward"].pairs]
    capped = [[(p.response_j, p.response_k) for p in build_pairs(tmp_path, {"reward": 1.0}, 4, seed)["reward"].pairs]
              for seed in (0, 0, 1, 2, 3)]
    assert capped[0] == capped[1] and len({tuple(c) for c in capped}) > 1
    for subset in capped:
        assert len(subset) == 4 and subset == [pair for pair in everything if pair in subset]


@pytest.mark.parametrize("tail", ['  <row Id="12" PostTypeId="2" ParentId="6" Sco', '  <row Id="12" <oops/>\r\n</posts>'])
def test_ill_formed_file_keeps_earlier_rows(tmp_path, tail):
    broken = write_posts(tmp_path, SITE, ROWS[:8], tail=tail)
    questions, answers, stats = read_posts(broken)
    assert sorted(questions) == [1, 6] and [a.id for a in answers] == [2, 3, 4, 5, 7, 8]
    assert stats.parse_error and stats.rows == 8

    write_posts(tmp_path, "tiny.meta.stackexchange.com", ROWS)  # read after the broken file's error
    data = build_pairs(tmp_path, fractions={"reward": 1.0})
    assert data.stats.parse_errors == 1 and data.stats.malformed_rows == 3
    assert len(data["reward"].pairs) == 6 and len(data[OOD_SPLIT].pairs) == 6
    assert {t.site for t in data[OOD_SPLIT].threads} == {"tiny.meta.stackexchange.com"}


def test_missing_data_is_a_clear_error(tmp_path):
    with pytest.raises(ErbenchError, match="not found") as missing:
        build_pairs(tmp_path / "nowhere")
    assert "--data-dir" in missing.value.fix and "stackexchange/<site>/Posts.xml" in missing.value.fix
    (tmp_path / "stackexchange").mkdir()
    with pytest.raises(ErbenchError, match="no <site>/Posts.xml"):
        build_pairs(tmp_path)
    with pytest.raises(ErbenchError, match="fractions"):
        build_pairs(tmp_path, fractions={"reward": 0.5})


def test_save_and_load(tmp_path):
    write_posts(tmp_path, SITE, ROWS)
    data = build_pairs(tmp_path, max_pairs_per_question=5)
    data.save(tmp_path / "cache")
    loaded = StackExchangeData.load(tmp_path / "cache")
    assert loaded.params == data.params and loaded.stats == data.stats
    assert all(loaded[name].threads == data[name].threads for name in data.splits)
    assert all_pairs(loaded) == all_pairs(data) and len(all_pairs(data)) == 5
    assert not list((tmp_path / "cache").glob(".*.tmp"))


@pytest.fixture(scope="module")
def real_data():
    if not (DATA_DIR / "stackexchange").is_dir():
        pytest.skip(f"no Stack Exchange dumps at {DATA_DIR / 'stackexchange'} (set ERBENCH_DATA)")
    return build_pairs(DATA_DIR)


def test_real_dumps(real_data):
    files = real_data.stats.files
    assert len(files) == 31 and real_data.stats.parse_errors == 0 and real_data.stats.malformed_rows == 0
    # The README's counts: 9,968 questions, 18,760 answers, 22,357 pairs of answers with different raw scores
    # (image-only answers, 136 of them, are dropped here as they have no text).
    assert sum(f.questions for f in files) == 9968
    assert sum(f.answers + f.empty_answers for f in files) == 18760
    raw_pairs = sum(a.score != b.score for split in real_data.splits.values() for t in split.threads
                    for i, a in enumerate(t.answers) for b in t.answers[i + 1:])
    assert 21500 < raw_pairs <= 22357

    split_of_question = {}
    for name, split in real_data.splits.items():
        for thread in split.threads:
            assert split_of_question.setdefault(thread.question_id, name) == name
            assert (name == OOD_SPLIT) == is_meta_site(thread.site)
            number = int(thread.question_id.rsplit("/", 1)[1])
            assert split_of(thread.site, number, real_data.params["fractions"]) == name
        assert {p.question_id for p in split.pairs} <= {t.question_id for t in split.threads}
    assert len(split_of_question) == 9968

    counts = {name: (s.questions, s.pairs) for name, s in real_data.stats.splits.items()}
    main_questions = sum(q for name, (q, _) in counts.items() if name != OOD_SPLIT)
    assert main_questions == 5120 and counts[OOD_SPLIT][0] == 4848
    for name, fraction in real_data.params["fractions"].items():
        assert abs(counts[name][0] / main_questions - fraction) < 0.03, counts
    total_pairs = sum(p for _, p in counts.values())
    assert 10000 < total_pairs < 14000
    assert counts["reward"][1] > max(counts[name][1] for name in ("finetune", "rl", "evaluation"))
    for pair in real_data["reward"].pairs[:500]:
        assert pair.score_j > pair.score_k and pair.response_j and pair.response_k and pair.question
