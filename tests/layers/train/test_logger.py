"""``layers.utils.logger`` (tensorpack's logger) and ``layers.utils.gpu``."""
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import tensorflow as tf

from layers.utils import gpu, logger

from .conftest import reset_logger

LOGGER_PY = Path(logger.__file__)
# Load logger.py by path so the child process does not import TensorFlow (seconds saved per test).
_CHILD = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("tp_logger", sys.argv[1])
m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
m.set_logger_dir(sys.argv[2])
m.info("hello from the child")
print("DIR", m.get_logger_dir())
"""


@pytest.fixture
def clean_logger():
    yield
    reset_logger()


def test_existing_directory_without_a_terminal_is_kept_without_prompting(tmp_path):
    d = tmp_path / "train_log" / "exp"
    d.mkdir(parents=True)
    (d / "old.txt").write_text("keep me")
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(LOGGER_PY), str(d)], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60)
    # A prompt would call input() on /dev/null, raise EOFError and fail the child.
    assert proc.returncode == 0, proc.stderr
    assert "stdin is not a terminal: keeping it (action='k')" in proc.stdout
    assert f"DIR {d}" in proc.stdout
    assert (d / "old.txt").read_text() == "keep me"
    assert "hello from the child" in (d / "log.log").read_text()


def test_terminal_user_is_asked_what_to_do(tmp_path, monkeypatch, clean_logger):
    d = tmp_path / "exp"
    d.mkdir()
    (d / "old.txt").write_text("x")
    answers = []
    monkeypatch.setattr(sys, "stdin", types.SimpleNamespace(isatty=lambda: True))
    monkeypatch.setattr("builtins.input", lambda prompt: answers.append(prompt) or "d")
    logger.set_logger_dir(str(d))
    assert answers == ["Select Action: k (keep) / d (delete) / q (quit):"]
    assert sorted(os.listdir(d)) == ["log.log"]


@pytest.mark.parametrize("action", ["b", "n"])
def test_backup_and_new_directory_actions_leave_the_old_directory_intact(tmp_path, clean_logger, action):
    d = tmp_path / "exp"
    d.mkdir()
    (d / "old.txt").write_text("x")
    logger.set_logger_dir(str(d), action=action)
    others = [p for p in tmp_path.iterdir() if p.name != "exp"]
    assert len(others) == 1 and others[0].name.startswith("exp")
    if action == "b":            # old contents moved away, dir reused
        assert (others[0] / "old.txt").exists() and sorted(os.listdir(d)) == ["log.log"]
        assert logger.get_logger_dir() == str(d)
    else:                        # old dir untouched, a new one used
        assert (d / "old.txt").exists() and logger.get_logger_dir() == str(others[0])


def test_quit_and_unknown_actions(tmp_path, clean_logger):
    d = tmp_path / "exp"
    d.mkdir()
    (d / "old.txt").write_text("x")
    with pytest.raises(OSError, match="exists"):
        logger.set_logger_dir(str(d), action="q")
    with pytest.raises(ValueError, match="action must be None or one of"):
        logger.set_logger_dir(str(d), action="x")


def test_auto_set_dir_names_the_directory_after_the_script(tmp_path, monkeypatch, clean_logger):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "__main__", types.SimpleNamespace(__file__="/somewhere/mnist-convnet.py"))
    logger.auto_set_dir()
    assert logger.get_logger_dir() == os.path.join("train_log", "mnist-convnet")
    assert (tmp_path / "train_log" / "mnist-convnet" / "log.log").exists()


def test_log_lines_have_tensorpack_format(tmp_path, capsys, clean_logger):
    logger.set_logger_dir(str(tmp_path / "d"))
    logger.warn("careful")
    logger.error("broken")
    out = capsys.readouterr().out
    assert " WRN careful" in out and " ERR broken" in out and "@test_logger.py:" in out


def test_get_num_gpu_counts_what_tensorflow_can_use(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert gpu.get_num_gpu() == len(tf.config.list_physical_devices("GPU"))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert gpu.get_num_gpu() == 0


@pytest.mark.parametrize(("env", "n"), [("0,1", 2), ("1", 1), ("", 0), ("0,-1,2", 1), ("-1", 0)])
def test_cuda_visible_devices_parsing_stops_at_the_first_invalid_entry(env, n):
    assert gpu._visible_from_env(env) == n
