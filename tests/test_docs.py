"""The docs stay true: the site builds with no broken link, the generated references match the code, and every
shell block marked runnable in README.md and docs/ runs against a live `logllm serve` on the embedded defaults.

Marking, in the Markdown (HTML comments, invisible on the page):
- `<!-- runnable -->` before a fenced bash block: it runs (bash, `set -euo pipefail`, from a scratch copy of the
  repository root with its own `runs/`, with `.venv/bin` first on PATH, `localhost:8000` pointed at the test's
  service and 5514 at its syslog listener) and must exit 0.
- `<!-- runnable short="ARGS" -->`: a long command (a training recipe) run in a short form: ARGS are appended to
  every `logllm train`/`logllm eval`/`logllm score` line of the block. The page shows the full command.
- `<!-- output -->` before the fenced block that follows a runnable one: its text is the command's stdout, compared
  line by line (trailing white space ignored). Only outputs that are stable are marked.
- `<!-- not-run: REASON -->` before a shell block that cannot run here (it starts a server, needs a container
  engine or a GPU); the reason is required and says where else it is exercised, if anywhere.
Every shell block (bash, sh, shell, console) carries one of these marks, and every fenced block names its language,
so a new command cannot slip in untested by accident.
Blocks run in page order (README first, then the nav's order), so a walk-through can build on its earlier steps.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.service.test_crash_recovery import ServiceProcess, free_port

REPO = Path(__file__).resolve().parents[1]
MARK = re.compile(r"<!--\s*runnable(?:\s+short=\"(?P<short>[^\"]*)\")?\s*-->")
NOT_RUN = re.compile(r"<!--\s*not-run:\s*(?P<reason>\S.*?)\s*-->")
FENCE = re.compile(r"^```(\w*)\s*$")
SHELL = {"bash", "sh", "shell", "console"}
BLOCK_TIMEOUT_S = 300


@dataclass(frozen=True)
class Block:
    page: str
    line: int  # 1-based line of the opening fence
    code: str
    expected: str | None

    def where(self) -> str:
        return f"{self.page}:{self.line}"


COMMAND = re.compile(r"^\s*(?:\.venv/bin/)?(?:logllm (?P<cli>train|eval|score)|python -m bench\.(?P<bench>\w+))\b")
COMMENT = re.compile(r"\s+#\s.*$")
COMMAND_END = re.compile(r"\s(?:\||\d?>|&&|;)\s")  # a pipe, a redirection or the next command on the line


def _short_args(first_line: str, short: str) -> str | None:
    """The arguments the short form adds to the command starting on this line, or None if it adds none.
    `short` is ARGS for every train/eval/score or bench command, or `train=ARGS; eval=ARGS; faults=ARGS` per command
    (the word after `logllm`, or the bench module's name)."""
    command = COMMAND.match(first_line)
    if not command:
        return None
    if "=" not in short.split(" ", 1)[0]:
        return short
    per_command = dict(part.strip().split("=", 1) for part in short.split(";") if part.strip())
    return per_command.get(command.group("cli") or command.group("bench"))


def shorten(code: str, short: str) -> str:
    """The block with the short form's arguments at the end of each train/eval/score or bench command: on its last
    continuation line (so they override the recipe's own flags), before a pipe or redirection, in place of a
    trailing comment."""
    lines = code.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        end = i
        while lines[end].rstrip().endswith("\\") and end + 1 < len(lines):
            end += 1
        command = lines[i : end + 1]
        args = _short_args(command[0], short)
        if args is not None:
            last = COMMENT.sub("", command[-1]).rstrip()
            cut = COMMAND_END.search(last)
            head, tail = (last[: cut.start()], last[cut.start() :]) if cut else (last, "")
            command[-1] = f"{head} {args}{tail}"
        out.extend(command)
        i = end + 1
    return "\n".join(out)


def _fenced(lines: list[str], start: int) -> tuple[str, int] | None:
    """The fenced block opening at the first fence at or after ``start`` (skipping blank lines): (text, end)."""
    i = start
    while i < len(lines) and not lines[i].strip():
        i += 1
    if i >= len(lines) or not FENCE.match(lines[i]):
        return None
    end = i + 1
    while end < len(lines) and lines[end].strip() != "```":
        end += 1
    return "\n".join(lines[i + 1 : end]), end


def runnable_blocks(path: Path, root: Path = REPO) -> list[Block]:
    lines = path.read_text().splitlines()
    page = str(path.relative_to(root))
    blocks = []
    for i, text in enumerate(lines):
        mark = MARK.fullmatch(text.strip())  # a marker is a line of its own; one quoted in prose is not
        if not mark:
            continue
        found = _fenced(lines, i + 1)
        assert found, f"{page}:{i + 1}: 'runnable' is not followed by a fenced block"
        code, end = found
        if mark.group("short") is not None:
            code = shorten(code, mark.group("short"))
        expected = None
        j = end + 1
        while j < len(lines) and not lines[j].strip():
            j += 1
        if j < len(lines) and lines[j].strip() == "<!-- output -->":
            output = _fenced(lines, j + 1)
            assert output, f"{page}:{j + 1}: 'output' is not followed by a fenced block"
            expected = output[0]
        blocks.append(Block(page, i + 2, code, expected))
    return blocks


def fenced_blocks(path: Path) -> Iterator[tuple[int, str, str]]:
    """(1-based line of the opening fence, language, the mark line above it or "") for each fenced block."""
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        above = next((lines[j].strip() for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        yield i + 1, fence.group(1), above
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            i += 1
        i += 1


def doc_pages() -> list[Path]:
    """README.md, then the site's pages in the nav's order."""
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text())

    def walk(items: list[object]) -> Iterator[str]:
        for item in items:
            if isinstance(item, str):
                yield item
            elif isinstance(item, dict):
                for value in item.values():
                    yield from walk(value if isinstance(value, list) else [value])

    return [REPO / "README.md", *(REPO / "docs" / page for page in walk(config["nav"]))]


def test_every_nav_page_exists_and_every_page_is_in_the_nav() -> None:
    pages = doc_pages()[1:]
    missing = [str(p.relative_to(REPO)) for p in pages if not p.exists()]
    assert not missing, f"mkdocs.yml names pages that do not exist: {missing}"
    on_disk = {p for p in (REPO / "docs").rglob("*.md")}
    assert on_disk - set(pages) == set(), f"pages not in mkdocs.yml's nav: {sorted(on_disk - set(pages))}"


def test_every_shell_block_is_run_or_says_why_not() -> None:
    unmarked = []
    for page in doc_pages():
        if not page.exists() or page.parent.name == "reference":
            continue
        for line, language, above in fenced_blocks(page):
            where = f"{page.relative_to(REPO)}:{line}"
            if not language:
                unmarked.append(f"{where}: a fenced block without a language")
            elif language in SHELL and not (MARK.fullmatch(above) or NOT_RUN.fullmatch(above)):
                unmarked.append(f"{where}: a {language} block marked neither runnable nor not-run: REASON")
    assert not unmarked, "\n".join(unmarked)


def test_the_generated_references_match_the_code() -> None:
    result = subprocess.run(
        [sys.executable, "scripts/docs_reference.py", "--check"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_site_builds_strict(tmp_path: Path) -> None:
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent)) or shutil.which("mkdocs")
    assert mkdocs, "mkdocs is in the dev extra (pyproject.toml): bash scripts/setup.sh installs it"
    result = subprocess.run(
        [mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site" / "index.html").exists()


def test_the_marking_finds_blocks_and_their_outputs(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "<!-- runnable -->\n```bash\necho hi\n```\n<!-- output -->\n```text\nhi\n```\n\n"
        '<!-- runnable short="--max-lines 10" -->\n```bash\nlogllm train --dataset bgl \\\n  --data x\n```\n'
    )
    first, second = runnable_blocks(page, root=tmp_path)
    assert (first.code, first.expected) == ("echo hi", "hi")
    assert second.code == "logllm train --dataset bgl \\\n  --data x --max-lines 10"  # last: it overrides the recipe
    assert shorten(".venv/bin/python -m bench.faults --lines 9   # 55 s", "--quick") == (
        ".venv/bin/python -m bench.faults --lines 9 --quick"
    )
    per_command = "train=--quick; eval=--eval-limit 2"
    assert shorten("logllm train --data x \\\n  --seed 1\nlogllm eval --data x", per_command) == (
        "logllm train --data x \\\n  --seed 1 --quick\nlogllm eval --data x --eval-limit 2"
    )
    assert shorten("logllm score f.log\ncp a b", per_command) == "logllm score f.log\ncp a b"
    assert shorten("logllm train --out x \\\n  --seed 1 | grep -E '^(a|b)'", "--quick") == (
        "logllm train --out x \\\n  --seed 1 --quick | grep -E '^(a|b)'"
    )
    assert shorten("logllm train --out x > t.log 2>&1", "--quick") == "logllm train --out x --quick > t.log 2>&1"


class DocsService(ServiceProcess):
    """The service the blocks run against, with a syslog TCP listener on a free port (the pages say 5514)."""

    def __init__(self, data: Path) -> None:
        self.syslog_port = free_port()
        super().__init__(
            ["--redis-data-dir", str(data), "--syslog-tcp", f"127.0.0.1:{self.syslog_port}"], data / "service.log"
        )


@pytest.fixture(scope="module")
def live_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DocsService]:
    """`logllm serve` on the embedded defaults (shipped checkpoint, embedded Redis) in a fresh data directory."""
    data = tmp_path_factory.mktemp("docs-redis")
    service = DocsService(data)
    try:
        service.wait_ready()
        yield service
    finally:
        service.kill()


ALL_BLOCKS = [block for page in doc_pages() if page.exists() for block in runnable_blocks(page)]


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the blocks run: the repository's entries linked into a scratch folder with its own empty `runs/`, and
    `../shared` beside it as beside the repository. A block that trains writes there, never into the checkout, and
    never resumes a run an earlier test session left behind."""
    root = tmp_path_factory.mktemp("docs-checkout") / REPO.name
    root.mkdir()
    for entry in REPO.iterdir():
        if entry.name not in {"runs", ".git"}:
            (root / entry.name).symlink_to(entry)
    (root / "runs").mkdir()
    if (REPO.parent / "shared").exists():
        (root.parent / "shared").symlink_to(REPO.parent / "shared")
    return root


@pytest.mark.slow
@pytest.mark.parametrize("block", ALL_BLOCKS, ids=[b.where() for b in ALL_BLOCKS])
def test_a_runnable_block_runs(block: Block, live_service: DocsService, checkout: Path, tmp_path: Path) -> None:
    env = os.environ.copy()
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["DOCS_TMP"] = str(tmp_path)
    env["LOGLLM_BENCH_RESULTS"] = str(tmp_path / "bench-results")  # a bench's short run leaves bench/results alone
    code = block.code.replace("localhost:8000", f"127.0.0.1:{live_service.port}")
    code = code.replace("5514", str(live_service.syslog_port))
    result = subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + code],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=BLOCK_TIMEOUT_S,
    )
    assert result.returncode == 0, (
        f"{block.where()} exited {result.returncode}\n--- stdout\n{result.stdout[-3000:]}\n--- stderr\n"
        f"{result.stderr[-3000:]}\n--- service\n{live_service.output()[-2000:]}"
    )
    if block.expected is not None:
        shown = [line.rstrip() for line in block.expected.strip().splitlines()]
        got = [line.rstrip() for line in result.stdout.strip().splitlines()]
        assert got == shown, f"{block.where()}: the page shows\n{block.expected}\nbut it printed\n{result.stdout}"
