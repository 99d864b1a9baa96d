"""The docs stay true: every relative link and #anchor in README.md and docs/ resolves (GitHub's anchor rules),
every command that a code block or an inline command names exists, every flag it passes is in that command's
parser, the README stays short and keeps its two quick-start commands, and no page narrates the project's
history (that is CHANGELOG.md's job)."""
import re
import shlex
from pathlib import Path

import pytest

from tool_parsers import ENTRY_POINTS, REPO, tool_help

PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
FENCE = re.compile(r"^ {0,3}(```|~~~)")
SHELL_WORDS = {"&&", "||", ";", "|", ">", ">>", "<", "2>&1", "&"}
GPU_CHECK_FLAGS = {"-h", "--help"}


def split_code(text: str) -> tuple[str, list[str]]:
    """(the text outside fenced code blocks, the fenced blocks' contents)."""
    prose, blocks, block = [], [], None
    for line in text.splitlines():
        if FENCE.match(line):
            if block is None:
                block = []
            else:
                blocks.append("\n".join(block))
                block = None
        elif block is None:
            prose.append(line)
        else:
            block.append(line)
    return "\n".join(prose), blocks


def inline_code(prose: str) -> list[str]:
    return re.findall(r"(?<!`)`([^`\n]+)`(?!`)", prose)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its rendered text, lower-cased, without punctuation, spaces as hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)     # links and images: their text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").replace("*", "")
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    prose, _ = split_code(page.read_text())
    found, seen = set(), {}
    for line in prose.splitlines():
        m = re.match(r"^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            base = slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")
        found.update(re.findall(r"<a\s+(?:name|id)=\"([^\"]+)\"", line))
    return found


def links(page: Path) -> list[str]:
    prose, _ = split_code(page.read_text())
    prose = re.sub(r"(?<!`)`[^`\n]+`(?!`)", "", prose)                    # code spans hold no links
    found = re.findall(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", prose)
    found += re.findall(r"(?m)^ {0,3}\[[^\]]+\]:\s+<?(\S+?)>?(?:\s|$)", prose)
    return [t for t in found if not re.match(r"^[a-z][a-z0-9+.-]*:", t)]   # http:, https:, mailto:


def broken_links(page: Path, root: Path = REPO) -> list[str]:
    broken = []
    for target in links(page):
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading with anchor #{anchor} in {dest.relative_to(root)}")
    return broken


def commands(page: Path) -> list[tuple[str, list[str]]]:
    """(entry point, the words after it) for every command that the page's code names: in fenced blocks (lines
    joined at a trailing backslash) and in inline code that is a command line."""
    prose, blocks = split_code(page.read_text())
    lines = [line for block in blocks for line in block.replace("\\\n", " ").splitlines()]
    lines += [c for c in inline_code(prose) if re.match(r"(python3?|bash|accelerate launch) ", c)]
    found = []
    for line in lines:
        try:
            words = shlex.split(line, comments=True)
        except ValueError:                       # an unbalanced quote: plain words are good enough for flags
            words = line.split("#")[0].split()
        for i, word in enumerate(words):
            m = re.search(r"(?:^|/)((?:tools|model)/[\w/.-]+\.(?:py|sh))$", word)
            if not m or not (m.group(1).startswith("tools/") or m.group(1) in ENTRY_POINTS):
                continue
            rest = []
            for w in words[i + 1:]:
                if w in SHELL_WORDS or w.endswith(";"):
                    break
                rest.append(w)
            found.append((m.group(1), rest))
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_and_anchor_resolves(page):
    broken = broken_links(page)
    assert not broken, "\n".join(broken)


def test_anchors_follow_githubs_rule():
    assert slug("Shards (written by `tools/make_shards.py`)") == "shards-written-by-toolsmake_shardspy"
    assert slug("Does FROSTER help?") == "does-froster-help"
    assert slug("Distributed, epochs, resume, bad samples") == "distributed-epochs-resume-bad-samples"
    assert slug("results.json") == "resultsjson"
    assert slug("Pipeline: split files → batches") == "pipeline-split-files--batches"
    assert slug("See [the demo](#the-demo) now") == "see-the-demo-now"


def test_a_missing_page_and_a_missing_anchor_are_reported(tmp_path):
    (tmp_path / "a.md").write_text("# Title\n\n## Two words\n\n[ok](#two-words) [ok](b.md#b) [x](c.md) "
                                   "[y](b.md#nope) [web](https://example.com) `[code](nope.md)`\n")
    (tmp_path / "b.md").write_text("# B\n\n```\n# not a heading\n```\n[ok](a.md#title)\n")
    assert broken_links(tmp_path / "a.md", tmp_path) == ["c.md: no such file",
                                                         "b.md#nope: no heading with anchor #nope in b.md"]
    assert broken_links(tmp_path / "b.md", tmp_path) == []
    assert anchors(tmp_path / "b.md") == {"b"}


def test_every_tool_flag_in_the_docs_exists_in_its_parser():
    parsers = tool_help()
    problems, checked = [], 0
    for page in PAGES:
        for tool, words in commands(page):
            where = f"{page.relative_to(REPO)}: {tool}"
            if tool == "tools/gpu_check.sh":
                known = GPU_CHECK_FLAGS
            elif tool in parsers:
                known = set(parsers[tool]["options"])
            elif tool.endswith(".sh") and (REPO / tool).is_file() and not any(w.startswith("-") for w in words):
                continue                         # a shell script called with positional words only
            else:
                problems.append(f"{where}: no such tool")
                continue
            for w in words:
                flag = w.strip("[]()").split("=")[0]
                if re.fullmatch(r"--?[A-Za-z][\w-]*", flag):
                    checked += 1
                    if flag not in known:
                        problems.append(f"{where}: {flag} is not an option")
    assert not problems, "\n".join(problems)
    assert checked > 50   # the docs do show commands with flags


def test_flags_found_in_a_code_block_are_attributed_to_their_tool(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("```bash\npython tools/make_shards.py --dataset k400 \\\n   --out /x  # --not-this\n"
                    "python tools/bench/loader.py --real DIR [--test] && python model/train.py --config F x=1\n"
                    "```\nRun `python tools/verify_shards.py STORE --max-lines 3`, not `tools/train_net.py`.\n")
    assert commands(page) == [("tools/make_shards.py", ["--dataset", "k400", "--out", "/x"]),
                              ("tools/bench/loader.py", ["--real", "DIR", "[--test]"]),
                              ("model/train.py", ["--config", "F", "x=1"]),
                              ("tools/verify_shards.py", ["STORE", "--max-lines", "3"])]


def test_every_benchmark_the_docs_name_is_a_script_in_tools_bench():
    named = {m for page in PAGES for m in re.findall(r"tools/bench[\w/]*\.py", page.read_text())}
    assert "tools/bench_fidelity.py" in named
    missing = sorted(n for n in named if not (REPO / n).is_file())
    assert missing == [], f"the docs name benchmarks that do not exist: {missing}"


def test_the_readme_is_short_and_starts_with_the_two_quick_start_commands():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 220    # "at most about 200 lines"; the rest lives in docs/
    _, blocks = split_code(text)
    assert "pip install -e '.[dev]' && python tools/demo.py --out demo_out" in blocks[0]
    assert "python -m pytest tests -q" in blocks[1]
    for needed in ("https://arxiv.org/abs/2402.03241", "https://github.com/Visual-AI/FROSTER", "Apache-2.0",
                   "@inproceedings", "cuda13", "## Predict", "## Your own videos", "## Reproducing the paper"):
        assert needed in text, needed
    assert (REPO / "LICENSE").read_text().count("Apache License") >= 1


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_page_narrates_the_projects_history(page):
    text = " ".join(page.read_text().split()).lower()
    said = [p for p in ("this round", "was lent", "no gpu has been available", "previous session", "this session",
                        "earlier version", "not yet run", "the issue measured", "before this change")
            if p in text]
    assert said == [], f"{page.relative_to(REPO)} narrates history ({said}); history goes to CHANGELOG.md"
