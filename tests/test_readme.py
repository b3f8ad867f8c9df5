"""README.md's quickstart runs as pasted: its Python writes digit.json and digit.png without TensorFlow,
and its curl commands, sent to a real server with the bundled model, get the answer the README shows."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def quickstart() -> str:
    text = README.read_text()
    return text[text.index("## Quickstart"):text.index("\n## ", text.index("## Quickstart") + 1)]


def fenced(section: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", section, re.S)


def heredoc_block() -> tuple[str, str, list[str]]:
    """(the command running the heredoc, the Python in it, the shell lines after it) of the quickstart."""
    block = next(b for b in fenced(quickstart(), "bash") if "<<'EOF'" in b)
    head, rest = block.split("<<'EOF'\n", 1)
    code, after = rest.split("\nEOF\n", 1)
    return head.strip(), code, [ln for ln in after.splitlines() if ln.strip()]


def run_quickstart_python(cwd: Path):
    """Run the heredoc's Python in ``cwd`` with TensorFlow made unimportable."""
    _, code, _ = heredoc_block()
    guard = "import sys; sys.modules['tensorflow'] = None\n"   # any `import tensorflow` now raises
    r = subprocess.run([sys.executable, "-c", guard + code], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"the quickstart's Python failed (or imported TensorFlow):\n{r.stderr[-3000:]}"


def test_the_python_runs_with_the_venv_interpreter_as_pasted():
    head, _, _ = heredoc_block()
    assert head.startswith(".venv/bin/python"), f"{head!r}: a bare python3 lacks the project's packages"


def test_the_python_writes_the_files_the_curl_lines_send_without_tensorflow(tmp_path):
    run_quickstart_python(tmp_path)
    _, _, lines = heredoc_block()
    for name in re.findall(r"@([\w.]+)", " ".join(lines)):
        assert (tmp_path / name).is_file(), f"the quickstart sends {name} but does not write it"
    body = json.loads((tmp_path / "digit.json").read_text())
    x = np.asarray(body["inputs"], dtype=np.float32)
    assert x.shape == (1, 28, 28) and 0 <= x.min() and x.max() <= 1
    png = np.asarray(Image.open(tmp_path / "digit.png"))
    assert png.shape == (28, 28) and png.dtype == np.uint8
    np.testing.assert_allclose(png / 255.0, x[0], atol=0.003)   # the same image, 8-bit
    # bright ink on a dark background, as the README says the model expects: mostly 0, strokes near 1
    assert np.median(x) < 0.1 and x.max() > 0.9


def test_the_input_is_the_first_held_out_digit_of_the_bundled_models_data(tmp_path):
    """The README's output was computed on model_zoo.datasets' held-out image 0: the same pixels."""
    from model_zoo.datasets import load_digits

    run_quickstart_python(tmp_path)
    x = np.asarray(json.loads((tmp_path / "digit.json").read_text())["inputs"], dtype=np.float32)
    np.testing.assert_allclose(x, load_digits().heldout_x[:1].round(3), atol=1e-6)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_curl_commands_get_the_answers_the_readme_shows(tmp_path):
    from service import Settings, create_app

    from .service.server import serve
    from .service.test_app import wait_ready

    run_quickstart_python(tmp_path)
    _, _, lines = heredoc_block()
    shown = json.loads(fenced(quickstart(), "json")[0])
    app = create_app(Settings(model_repository=ROOT / "model_repository", intra_op_threads=1,
                              inter_op_threads=1))
    with serve(app) as srv, httpx.Client(base_url=srv.url, timeout=60) as client:
        assert wait_ready(client, timeout_s=120).status_code == 200
        answers = []
        for line in lines:
            assert line.startswith("curl ") and "localhost:8000" in line, line
            r = subprocess.run(["bash", "-c", line.replace("localhost:8000", f"127.0.0.1:{srv.port}")],
                               cwd=tmp_path, capture_output=True, text=True, timeout=60)
            assert r.returncode == 0, r.stderr
            answers.append(json.loads(r.stdout))
    got = answers[0]
    assert (got["model"], got["version"]) == (shown["model"], shown["version"])
    np.testing.assert_allclose(got["outputs"]["prob"], shown["outputs"]["prob"], rtol=1e-3, atol=1e-6)
    assert int(np.argmax(got["outputs"]["prob"][0])) == 1
    png_answer = json.dumps(answers[1])
    assert re.search(r'"label":\s*"1"', png_answer), f"the PNG is not read as a 1: {png_answer}"


def _numbers_in(obj) -> set[int]:
    """Every number in a JSON document, rounded to an integer."""
    if isinstance(obj, dict):
        return set().union(*map(_numbers_in, obj.values())) if obj else set()
    if isinstance(obj, list):
        return set().union(*map(_numbers_in, obj)) if obj else set()
    if isinstance(obj, (int, float)) and not isinstance(obj, bool):
        return {round(obj)}
    return set()


def test_the_performance_figures_come_from_the_committed_results_files_named_beside_them():
    text = README.read_text()
    section = text[text.index("Performance, from committed runs"):]
    section = section[:section.index("\n## ")]
    files = re.findall(r"\(\s*(bench/results/[\w.-]+\.json)\s*\)", section)
    assert files, "the performance paragraph must link the results file(s) it quotes"
    for f in files:
        assert (ROOT / f).is_file(), f"{f} is not committed"
        assert re.search(rf"{re.escape(f)}\)\s*\n?\s*\((made by )?`(make bench|python -m bench\.|python3 \.\./shared/peers/run\.py)",
                         section), (
            f"no command next to {f}")
    known = set().union(*(_numbers_in(json.loads((ROOT / f).read_text())) for f in files))
    quoted = {int(n.replace(",", "")) for n in re.findall(r"(?<![\w.-])(\d{1,3}(?:,\d{3})+|\d{3,})(?![\w.-])",
                                                           section)}
    assert quoted, "no figure found: update this test if the paragraph changed shape"
    assert quoted <= known, f"figures not in {files}: {sorted(quoted - known)}"


def _markdown_files() -> list[Path]:
    r = subprocess.run(["git", "ls-files", "*.md"], cwd=ROOT, capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip("not a git checkout")
    return [ROOT / p for p in r.stdout.split()]


def test_every_markdown_file_a_document_names_is_in_the_project():
    """tests/fixtures/README.md once cited a notes file that only existed outside the project."""
    present = {p.name for p in _markdown_files()}
    for md in _markdown_files():
        for name in set(re.findall(r"(?<![\w/.-])([\w.-]+\.md)\b", md.read_text())):
            assert name in present, f"{md.relative_to(ROOT)} names {name}, which is not in the project"


def test_tensorboard_that_the_model_zoo_readme_runs_is_installed_with_the_project():
    from importlib import metadata

    assert "tensorboard --logdir" in (ROOT / "model_zoo/README.md").read_text()
    import tomllib

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert any(re.match(r"tensorboard\b(?![-_])", d) for d in deps), "tensorboard is not a dependency"
    assert metadata.entry_points(group="console_scripts", name="tensorboard"), "no tensorboard command"
