"""Every deployment file parses, and every TPSERVE_* name written anywhere in them is a real setting."""
from __future__ import annotations

import json
import re
import subprocess

import pytest

from .helpers import (
    COMPOSE,
    DEPLOY,
    DOCKERFILE,
    DOCKERIGNORE,
    ENV_NAME_RE,
    ROOT,
    deploy_files,
    load_yaml_docs,
    parse_dockerfile,
    rel,
    settings_env_names,
    settings_from_env,
    stage_env,
)

YAML_FILES = deploy_files(".yml", ".yaml")
JSON_FILES = deploy_files(".json")
TEXT_FILES = sorted(p for p in DEPLOY.rglob("*") if p.is_file()) + [COMPOSE, DOCKERIGNORE]


def test_the_deployment_files_exist():
    expected = ["deploy/Dockerfile", ".dockerignore", "docker-compose.yml", "deploy/README.md",
                "deploy/prometheus/prometheus.yml", "deploy/grafana/dashboards/tpserve.json",
                "deploy/k8s/kustomization.yaml", "deploy/k8s/overlays/gpu/kustomization.yaml"]
    missing = [p for p in expected if not (ROOT / p).is_file()]
    assert not missing, f"missing: {missing}"
    assert list((DEPLOY / "grafana/provisioning/datasources").glob("*.yml"))
    assert list((DEPLOY / "grafana/provisioning/dashboards").glob("*.yml"))


@pytest.mark.parametrize("path", YAML_FILES, ids=rel)
def test_yaml_parses(path):
    docs = load_yaml_docs(path)
    assert docs, f"{rel(path)} is empty"
    assert all(isinstance(d, dict) for d in docs), f"{rel(path)}: every document should be a mapping"


@pytest.mark.parametrize("path", JSON_FILES, ids=rel)
def test_json_parses(path):
    assert isinstance(json.loads(path.read_text()), dict)


@pytest.mark.parametrize("path", TEXT_FILES, ids=rel)
def test_every_tpserve_variable_named_is_a_setting(path):
    """Catches typos like TPSERVE_BATCHING_MAX_BATCH_SIZE (one underscore) in files and comments."""
    known = settings_env_names()
    names = sorted(set(ENV_NAME_RE.findall(path.read_text(errors="replace"))))
    unknown = [n for n in names if n not in known]
    assert not unknown, (f"{rel(path)} names {unknown}, which service.settings.Settings does not have "
                         f"(nested fields use '__', e.g. TPSERVE_BATCHING__MAX_BATCH_SIZE)")


def test_the_image_environment_is_valid_settings(monkeypatch):
    df = parse_dockerfile()
    env = {k: v for k, v in stage_env(df, df.final).items() if k.startswith("TPSERVE_")}
    assert env, f"{rel(DOCKERFILE)} sets no TPSERVE_* variable"
    settings_from_env(env, monkeypatch)


def test_the_env_example_is_valid_and_holds_no_secret(monkeypatch):
    example = DEPLOY / "tpserve.env.example"
    env = {}
    for line in example.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            k, _, v = line.partition("=")
            env[k.strip()] = v.strip()
    assert env.get("TPSERVE_API_KEYS", "") == "", "the example must not carry an API key value"
    settings_from_env(env, monkeypatch)


def test_local_secret_files_are_git_ignored():
    """docker-compose.yml reads deploy/tpserve.env and .env; neither may ever be committed."""
    for path in ("deploy/tpserve.env", ".env"):
        r = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT, capture_output=True)
        if r.returncode == 128:
            pytest.skip("not a git checkout")
        assert r.returncode == 0, f"{path} is not git-ignored: add it to .gitignore"


def test_the_dockerfile_has_no_syntax_directive():
    """`# syntax=` makes BuildKit pull a frontend image first: offline and mirrored builds fail."""
    for line in DOCKERFILE.read_text().splitlines():
        if not line.startswith("#"):
            break
        assert not re.match(r"#\s*syntax\s*=", line, re.I), f"{rel(DOCKERFILE)}: drop {line!r}"


def test_make_installs_with_the_lock_the_image_uses_and_records_how_it_was_made():
    makefile = (ROOT / "Makefile").read_text()
    lock = ROOT / "requirements.lock"
    installs = re.findall(r"pip install [^\n]*-e [^\n]*", makefile)
    assert installs and all("-c $(LOCK)" in i for i in installs), installs
    assert re.search(r"^LOCK := requirements\.lock$", makefile, re.M)
    assert "PIP_CONSTRAINT=/src/requirements.lock" in DOCKERFILE.read_text()
    # the lock's header is the command of `make lock` (same inputs, same options)
    header = re.search(r"^#\s+(uv pip compile .*)$", lock.read_text(), re.M).group(1).split()
    recipe = re.search(r"uv pip compile (.*?)\$\(UV_ARGS\) -o \$\(LOCK\)", makefile, re.S).group(1)
    recipe = [w for w in recipe.replace("\\\n", " ").split() if w != "--native-tls"]
    assert header == ["uv", "pip", "compile", *recipe, "-o", "requirements.lock"], (header, recipe)
    assert re.search(r"^UV_VERSION := \d+\.\d+\.\d+$", makefile, re.M), "pin the resolver's version"
