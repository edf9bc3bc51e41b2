"""Every fenced ```bash and ```python block of README.md runs as written (issue 25, item 3).

Each block runs in a fresh copy of the repository's tracked files (what a clone holds), with
HF_HUB_OFFLINE=1 (conftest). Not run, named exactly below: the set-up commands (they create a
virtualenv and install from the network). How each block runs:

- ``regionlab ...`` lines of a bash block run in this process through ``regionlab.cli.main``
  (the console script's entry point), the rest of the line split as bash would; other lines
  run in ``bash``. The ``slow`` test runs the bash blocks verbatim in ``bash -e`` instead.
- python blocks are executed in this process; the gradio_client block talks to the app
  started in-process on 127.0.0.1 (``app_server.py``), its one ``Client("http://...:7860/")``
  URL replaced by that app's URL, and nothing else changed.

A block that refers to a file that does not exist fails (see
``test_the_runner_fails_on_a_missing_file``).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
# The set-up commands (README "Set up"), matched exactly: if one changes, the test runs it and
# fails, instead of skipping something new.
SETUP = {
    "python3 -m venv .venv && . .venv/bin/activate && pip install -r requirements.txt -e . "
    "&& python app.py",
    "python3 -m venv .venv && . .venv/bin/activate && pip install -r requirements.txt -e "
    '".[dev]" && python -m pytest -q',
    "python3 -m venv .venv && . .venv/bin/activate && pip install torch torchvision "
    "--index-url https://download.pytorch.org/whl/cpu && pip install -r requirements.txt -e .",
}
APP_URL = 'Client("http://127.0.0.1:7860/")'
FENCE = re.compile(r"^```(\w+)[^\n]*\n(.*?)^```", re.S | re.M)


def blocks() -> list[tuple[str, str, str]]:
    """(id, language, code) of every fenced bash/python block, in order; id names its section."""
    text = README.read_text(encoding="utf-8")
    out = []
    for m in FENCE.finditer(text):
        lang, code = m.group(1), m.group(2)
        if lang not in ("bash", "python"):
            continue
        heading = re.findall(r"^#+ (.+)$", text[: m.start()], re.M)
        section = re.sub(r"\W+", "-", heading[-1].lower()).strip("-") if heading else "top"
        out.append((f"{len(out)}-{section}-{lang}", lang, code))
    return out


BLOCKS = blocks()
RUN = [b for b in BLOCKS if not (b[1] == "bash" and b[2].strip() in SETUP)]


def test_the_readme_has_the_blocks_we_expect():
    langs = [lang for _, lang, _ in BLOCKS]
    assert langs.count("python") >= 2 and langs.count("bash") >= 4
    skipped = [code.strip() for _, lang, code in BLOCKS if code.strip() in SETUP]
    assert sorted(skipped) == sorted(SETUP)  # each set-up command is there, once
    assert sum(APP_URL in code for _, _, code in BLOCKS) == 1


@pytest.fixture
def clone(tmp_path, monkeypatch) -> Path:
    """A copy of the tracked files (a fresh clone's tree; the README's own version), as cwd;
    ``regionlab`` and ``python`` on PATH are this interpreter's."""
    dest = tmp_path / "clone"
    try:
        files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                               check=True).stdout.decode().split("\0")
    except (OSError, subprocess.CalledProcessError):
        files = []  # not a git checkout: an empty folder is the strictest stand-in
    dest.mkdir()
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    monkeypatch.chdir(dest)
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    return dest


def commands(code: str) -> list[str]:
    """The block's commands: backslash-continued lines joined, blank lines dropped."""
    return [c.strip() for c in code.replace("\\\n", " ").splitlines() if c.strip()]


def run_bash_block(code: str, cwd: Path) -> None:
    from regionlab.cli import main

    for cmd in commands(code):
        argv = shlex.split(cmd, comments=True)
        if argv and argv[0] == "regionlab":
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                rc = main(argv[1:])
            assert rc == 0, f"`{cmd}` exited with {rc}"
        elif argv:
            res = subprocess.run(["bash", "-ec", cmd], cwd=cwd, capture_output=True, text=True)
            assert res.returncode == 0, f"`{cmd}` exited with {res.returncode}: {res.stderr}"


def run_python_block(code: str, app_url: str | None = None) -> str:
    if APP_URL in code:
        assert app_url, "this block needs the app"
        code = code.replace(APP_URL, f'Client("{app_url}", verbose=False)')
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(README), "exec"), {"__name__": "__readme__"})
    return out.getvalue()


@pytest.fixture(scope="module")
def app():
    from app_server import running_app

    with running_app() as demo:
        yield demo


@pytest.mark.parametrize("block", RUN, ids=[b[0] for b in RUN])
def test_readme_block_runs(block, clone, request):
    _, lang, code = block
    if lang == "bash":
        run_bash_block(code, clone)
        return
    url = request.getfixturevalue("app").local_url if APP_URL in code else None
    run_python_block(code, url)


def test_the_runner_fails_on_a_missing_file(clone):
    """The old README's first command, in a fresh clone: scene.png does not exist."""
    with pytest.raises((AssertionError, OSError, ValueError)):
        run_bash_block("regionlab classify scene.png --vocab shapes --json\n", clone)
    with pytest.raises(AssertionError, match="exited with"):
        run_bash_block("ls star.png\n", clone)
    with pytest.raises(OSError):
        run_python_block("from PIL import Image\nImage.open('circle.png')\n")


@pytest.mark.slow
@pytest.mark.parametrize("block", [b for b in RUN if b[1] == "bash"],
                         ids=[b[0] for b in RUN if b[1] == "bash"])
def test_readme_bash_block_verbatim(block, clone):
    """The bash blocks exactly as a user pastes them (one process per command)."""
    res = subprocess.run(["bash", "-e", "-c", block[2]], cwd=clone, capture_output=True,
                         text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-2000:]
