"""deploy/README.md: its settings table lists exactly the settings of service.settings.Settings."""
from __future__ import annotations

import re
from pathlib import Path

from .helpers import README, settings_leaf_fields


def render_default(field) -> str:
    v = field.get_default(call_default_factory=True)
    if v is None:
        return "none"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, (list, tuple)):
        return ",".join(map(str, v)) if v else "(empty)"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, Path):
        return str(v)
    return str(v)


def settings_table() -> dict[str, tuple[str, str]]:
    rows = {}
    for line in README.read_text().splitlines():
        m = re.match(r"^\|\s*`(TPSERVE_[A-Z0-9_]+)`\s*\|\s*(.*?)\s*\|\s*(.*?)\s*\|\s*$", line)
        if m:
            rows[m.group(1)] = (m.group(2).strip("`").strip(), m.group(3))
    return rows


def test_settings_table_lists_every_setting_with_its_default():
    fields = settings_leaf_fields()
    table = settings_table()
    expected_rows = "\n".join(f"| `{n}` | `{render_default(f)}` | {f.description or ''} |" for n, f in fields.items())
    missing, extra = sorted(set(fields) - set(table)), sorted(set(table) - set(fields))
    assert not missing and not extra, (
        f"deploy/README.md's settings table is out of date: missing {missing}, not settings {extra}.\n"
        f"Rows generated from Settings (edit the descriptions as you like):\n{expected_rows}")
    wrong = {n: (table[n][0], render_default(f)) for n, f in fields.items() if table[n][0] != render_default(f)}
    assert not wrong, f"defaults in the README differ from Settings (README, code): {wrong}"


def test_docker_run_examples_outlast_the_drain():
    """`docker stop` SIGKILLs after --stop-timeout (10 s by default): every example must give a draining
    server its grace window, its shutdown timeout and the last answers' window (see test_compose)."""
    from service.settings import Settings

    from .test_compose import uvicorn_close_s

    budget = (Settings.model_fields["drain_grace_s"].default + Settings.model_fields["shutdown_timeout_s"].default
              + uvicorn_close_s())
    runs = [ln for ln in README.read_text().splitlines() if ln.lstrip().startswith("docker run ")]
    assert runs, "no docker run example"
    for ln in runs:
        m = re.search(r"--stop-timeout[ =](\d+)", ln)
        assert m and int(m.group(1)) > budget, f"{ln.strip()!r}: --stop-timeout must exceed {budget:.0f} s"


def test_readme_states_the_operational_facts():
    text = " ".join(README.read_text().split())
    for needle in ("tensorflow-cpu", "requirements.lock", "make lock", "Compose 2.24", "never restarts",
                   "autoheal", "stop_grace_period", "GRAFANA_ADMIN_PASSWORD", "`--batching.max-batch-size`"):
        assert needle in text, f"deploy/README.md does not say {needle!r}"


def test_readme_covers_each_way_to_run():
    text = README.read_text()
    for needle in ("docker build", "--build-arg TF_EXTRA=and-cuda", "docker compose up", "--profile gpu",
                   "kubectl apply -k deploy/k8s", "overlays/gpu", "tpserve_queue_rows", "poll_interval_s",
                   "terminationGracePeriodSeconds", "TPSERVE_API_KEYS"):
        assert needle in text, f"deploy/README.md does not mention {needle!r}"
