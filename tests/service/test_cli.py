"""``python -m service`` / ``tpserve`` command line, and ``make serve``'s command line."""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from service.__main__ import flag_name, settings_from_argv
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def leaf_fields(model=Settings, path=()):
    out = {}
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and hasattr(ann, "model_fields"):
            out.update(leaf_fields(ann, (*path, name)))
        else:
            out[(*path, name)] = field
    return out


@pytest.fixture
def clean_env(monkeypatch):
    for k in list(os.environ):
        if k.startswith("TPSERVE_"):
            monkeypatch.delenv(k)
    return monkeypatch


def test_help_lists_every_setting_with_its_variable():
    """The README says every setting is a flag: --help must show each field of Settings (nested ones too)."""
    r = subprocess.run([sys.executable, "-m", "service", "--help"], cwd=ROOT, capture_output=True, text=True,
                       timeout=60, env={**os.environ, "COLUMNS": "200"})
    assert r.returncode == 0, r.stderr
    fields = leaf_fields()
    assert len(fields) > 20
    for path, field in fields.items():
        assert flag_name(path) in r.stdout, f"--help does not list {flag_name(path)}"
        env = "TPSERVE_" + "__".join(path).upper()
        assert env in r.stdout, f"--help does not name {env}"
        first_words = " ".join((field.description or "").split()[:3])
        assert first_words in " ".join(r.stdout.split()), f"{flag_name(path)}: help lacks its description"
    assert "--warmup" in r.stdout and "--no-warmup" in r.stdout


def test_flags_override_the_environment_and_merge_nested_fields(clean_env):
    clean_env.setenv("TPSERVE_PORT", "9001")
    clean_env.setenv("TPSERVE_BATCHING__MAX_QUEUE_SIZE", "7")
    s = settings_from_argv(["--batching.max-batch-size", "8", "--port", "9002", "--no-warmup",
                            "--default-timeout-ms", "null", "--api-keys", "k1, k2", "--log-level", "debug"])
    assert s.port == 9002                                   # the flag wins over TPSERVE_PORT
    assert (s.batching.max_batch_size, s.batching.max_queue_size) == (8, 7)   # flag + environment, merged
    assert s.warmup is False and s.default_timeout_ms is None
    assert s.api_keys == ["k1", "k2"] and s.log_level == "debug"


def test_a_bad_flag_value_is_a_validation_error_naming_the_field(clean_env):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="max_batch_size"):
        settings_from_argv(["--batching.max-batch-size", "0"])
    with pytest.raises(SystemExit):
        settings_from_argv(["--log-level", "loud"])      # not one of the choices: argparse exits 2


def _make_serve_command(env: dict, *make_args: str) -> list[str]:
    """The command `make serve` would run (dry run), without the interpreter: the arguments of -m service."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    r = subprocess.run(["make", "--no-print-directory", "-n", "serve", *make_args], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    line = next(ln for ln in r.stdout.splitlines() if " -m service" in ln)
    argv = shlex.split(line)
    return argv[argv.index("service") + 1:]


def test_make_serve_honours_the_repository_from_the_environment(clean_env, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TPSERVE_") and k not in ("HOST", "PORT")}
    env["TPSERVE_MODEL_REPOSITORY"] = str(tmp_path)
    argv = _make_serve_command(env)
    clean_env.setenv("TPSERVE_MODEL_REPOSITORY", str(tmp_path))
    assert settings_from_argv(argv).model_repository == tmp_path


def test_make_serve_host_and_port_variables_still_work(clean_env):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TPSERVE_") and k not in ("HOST", "PORT")}
    s = settings_from_argv(_make_serve_command(env, "HOST=0.0.0.0", "PORT=9000"))
    assert (s.host, s.port) == ("0.0.0.0", 9000)
    s = settings_from_argv(_make_serve_command(env))    # nothing given: the documented defaults
    assert (s.host, s.port, str(s.model_repository)) == ("127.0.0.1", 8000, "model_repository")
