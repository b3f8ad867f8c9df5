"""docker-compose.yml, Prometheus and Grafana files: lint and consistency with the service."""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from .helpers import (
    COMPOSE,
    DEPLOY,
    ROOT,
    app_routes,
    check_promql,
    image_is_pinned,
    load_yaml,
    metric_catalog,
    output_labels,
    parse_dockerfile,
    pyproject,
    seconds,
    settings_default,
    settings_from_env,
    stage_env,
)

SECRET_KEY_RE = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|API_?KEYS?|PRIVATE_KEY|CREDENTIAL)", re.I)
DASHBOARD = DEPLOY / "grafana/dashboards/tpserve.json"


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_yaml(COMPOSE)


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def tpserve_services(services) -> dict:
    return {n: s for n, s in services.items() if "build" in s}


def env_of(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) if "=" in e else (e, None) for e in env)
    return {k: ("" if v is None else str(v)) for k, v in env.items()}


def uvicorn_close_s() -> float:
    """How long the server takes after the drain to write its last answers and stop: uvicorn's graceful
    window (service/__main__.py's timeout_graceful_shutdown) in embedded mode, the front ends' stop window
    (service/supervisor.py's _FRONTEND_STOP_S, which contains uvicorn's) with front-end processes."""
    m = re.search(r"timeout_graceful_shutdown=(\d+(?:\.\d+)?)", (ROOT / "service/__main__.py").read_text())
    assert m, "service/__main__.py no longer sets uvicorn's timeout_graceful_shutdown: update this test"
    f = re.search(r"^_FRONTEND_STOP_S = (\d+(?:\.\d+)?)", (ROOT / "service/supervisor.py").read_text(), re.M)
    assert f, "service/supervisor.py no longer sets _FRONTEND_STOP_S: update this test"
    return max(float(m.group(1)), float(f.group(1)))


def container_port(service: dict, setting: str = "port") -> int:
    """The port the server listens on in this service's container: HTTP (``port``) or ``grpc_port``."""
    df = parse_dockerfile()
    image_env = stage_env(df, df.final)
    var = "TPSERVE_" + setting.upper()
    return int(env_of(service).get(var, image_env.get(var, settings_default(setting))))


# ------------------------------------------------------------------------------------------------ lint
def test_images_are_pinned(services):
    version = pyproject()["project"]["version"]
    for name, s in services.items():
        assert "image" in s, f"{name}: name the image (a pinned tag)"
        if "build" in s:
            assert re.fullmatch(rf"tpserve:{re.escape(version)}(-gpu)?", s["image"]), (
                f"{name}: the locally built image should be tagged with the project version {version}")
            assert s["build"]["dockerfile"] == "deploy/Dockerfile" and s["build"]["context"] == "."
        else:
            ok, why = image_is_pinned(s["image"])
            assert ok, f"{name}: {why}"
    assert not re.search(r"(?i):latest\b", COMPOSE.read_text())


def test_ports_are_bound_to_loopback(services):
    for name, s in services.items():
        for p in s.get("ports", []):
            assert isinstance(p, str) and p.startswith("127.0.0.1:"), (
                f"{name}: publish {p!r} on 127.0.0.1 only (put a TLS proxy in front to expose it)")


def test_no_secret_values(compose, services):
    secrets = compose.get("secrets", {})
    for name, s in services.items():
        for k, v in env_of(s).items():
            if k.endswith("__FILE"):   # Grafana-style: the value is the path of a mounted secret
                m = re.fullmatch(r"/run/secrets/(\w+)", v)
                assert m and m.group(1) in s.get("secrets", []), f"{name}: {k}={v} is not a secret of {name}"
            elif SECRET_KEY_RE.search(k):
                assert re.fullmatch(r"\$\{\w+(:?\?[^}]*)?\}", v), (
                    f"{name}: {k} must be a ${{VAR}} or ${{VAR:?message}} reference without a default value")
        for f in s.get("env_file", []):
            path = f["path"] if isinstance(f, dict) else f
            assert path == "deploy/tpserve.env", f"{name}: env file {path} (test_files checks it is git-ignored)"
    assert "TPSERVE_API_KEYS" not in json.dumps(services), "API keys come from the env file, never inline"
    for sname, sec in secrets.items():
        assert set(sec) <= {"environment", "file"}, f"secret {sname}: from the environment or a file, never inline"


def test_grafanas_password_is_needed_by_grafana_only(compose, services):
    """A ${VAR:?} anywhere in the file fails every compose command (ps, logs, down, build) without .env;
    the password is a secret taken from the environment when the Grafana container is created."""
    assert "${GRAFANA_ADMIN_PASSWORD" not in COMPOSE.read_text()
    assert compose["secrets"]["grafana_admin_password"] == {"environment": "GRAFANA_ADMIN_PASSWORD"}
    users = [n for n, s in services.items() if "grafana_admin_password" in s.get("secrets", [])]
    assert users == ["grafana"]
    assert env_of(services["grafana"])["GF_SECURITY_ADMIN_PASSWORD__FILE"] == "/run/secrets/grafana_admin_password"
    assert "GF_SECURITY_ADMIN_PASSWORD" not in env_of(services["grafana"]), "no inline password"


def test_every_service_has_a_healthcheck_and_dependencies_are_declared(services):
    for name, s in services.items():
        hc = s.get("healthcheck")
        assert hc and hc.get("test"), f"{name}: no healthcheck"
        for dep, cond in (s.get("depends_on") or {}).items():
            assert cond["condition"] in ("service_healthy", "service_started"), f"{name} -> {dep}"
            if cond["condition"] == "service_healthy":
                assert services[dep].get("healthcheck"), f"{dep} has no healthcheck to wait for"
            assert not services[dep].get("profiles"), f"{name} depends on {dep}, which only runs in a profile"


def test_prometheus_runs_while_tpserve_is_unhealthy(services):
    """TpserveDown / TpserveModelLoadFailed must be able to fire exactly when tpserve is not healthy."""
    prom = next(n for n, s in services.items() if s["image"].startswith("prom/prometheus"))
    for dep, cond in (services[prom].get("depends_on") or {}).items():
        if "build" in services[dep]:
            assert cond["condition"] == "service_started", f"{prom} waits for {dep} to be healthy"


def test_tpserve_containers_have_cpu_and_memory_limits_and_matching_tensorflow_threads(services, monkeypatch):
    for name, s in tpserve_services(services).items():
        cpus = float(s["cpus"])
        mem = s["mem_limit"]
        assert cpus > 0 and re.fullmatch(r"\d+(\.\d+)?[mg]", str(mem)), f"{name}: cpus {cpus}, mem_limit {mem}"
        settings = settings_from_env(env_of(s), monkeypatch)
        for threads in (settings.intra_op_threads, settings.inter_op_threads):
            # 0 would size the pools by the host's cores, oversubscribing the limited container
            assert 1 <= threads <= math.ceil(cpus), f"{name}: {threads} TensorFlow threads for {cpus} CPUs"


def test_tpserve_services(services, monkeypatch):
    routes = app_routes()
    tps = tpserve_services(services)
    assert set(tps) >= {"tpserve", "tpserve-gpu"}
    for name, s in tps.items():
        env = env_of(s)
        settings = settings_from_env(env, monkeypatch)  # every value parses
        # the health check URL is a real, open route on the container's port
        test = " ".join(s["healthcheck"]["test"])
        paths = re.findall(r"127\.0\.0\.1:[^/]+(/\w+)", test)
        assert paths and all("GET" in routes.get(p, ()) for p in paths), test
        assert all(p in settings.open_paths for p in paths)
        # ports: container side is the port the server listens on
        for p in s.get("ports", []):
            assert int(p.rsplit(":", 1)[1]) in (container_port(s), container_port(s, "grpc_port"))
        # shutdown: Docker must not SIGKILL a draining server
        grace = seconds(s.get("stop_grace_period", "10s"))
        budget = settings.drain_grace_s + settings.shutdown_timeout_s + uvicorn_close_s()
        assert grace > budget, (
            f"{name}: stop_grace_period {grace}s <= drain {settings.drain_grace_s}s + shutdown "
            f"{settings.shutdown_timeout_s}s + uvicorn's {uvicorn_close_s()}s")
        # hardening mirrors the Kubernetes pod
        assert s.get("read_only") is True and "/tmp" in s.get("tmpfs", [])
        assert s.get("cap_drop") == ["ALL"]
        # the model repository volume ends where the image expects models
        df = parse_dockerfile()
        repo = env.get("TPSERVE_MODEL_REPOSITORY", stage_env(df, df.final)["TPSERVE_MODEL_REPOSITORY"])
        targets = {v.split(":")[1]: v.split(":")[0] for v in s.get("volumes", []) if isinstance(v, str)}
        assert repo in targets and (ROOT / targets[repo]).is_dir()


def test_gpu_profile_reserves_nvidia_devices(services):
    gpu = [s for s in services.values() if "gpu" in s.get("profiles", [])]
    assert len(gpu) == 1
    s = gpu[0]
    devices = s["deploy"]["resources"]["reservations"]["devices"]
    assert any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) for d in devices)
    assert env_of(s).get("TPSERVE_DEVICE") in ("auto",) or env_of(s).get("TPSERVE_DEVICE", "").startswith("gpu:")
    assert s["build"].get("args", {}).get("TF_EXTRA") == "and-cuda"
    assert s["image"].endswith("-gpu")
    host_ports = [p.split(":")[1] for p in s.get("ports", [])]
    others = [p.split(":")[1] for n, o in services.items() if o is not s for p in o.get("ports", [])]
    assert not set(host_ports) & set(others), "the GPU service must not collide with the CPU service's port"


def test_bind_mounted_files_exist(services):
    for name, s in services.items():
        for v in s.get("volumes", []):
            if isinstance(v, str) and v.startswith("./"):
                assert (ROOT / v.split(":")[0]).exists(), f"{name}: {v}"


def test_docker_compose_config_when_available():
    """`docker compose config` validates against the Compose specification; optional (needs the CLI plugin
    or a docker-compose binary, no engine)."""
    for cmd in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(cmd[0]) and subprocess.run([*cmd, "version"], capture_output=True).returncode == 0:
            break
    else:
        pytest.skip("no docker compose CLI")
    # Without GRAFANA_ADMIN_PASSWORD (and without .env: --env-file /dev/null) the file still loads, so
    # ps, logs, down and build work; only creating the Grafana container needs the password.
    env = {k: v for k, v in os.environ.items() if k != "GRAFANA_ADMIN_PASSWORD"}
    for profile in ([], ["--profile", "gpu"]):
        r = subprocess.run([*cmd, "-f", str(COMPOSE), "--env-file", os.devnull, *profile, "config", "--quiet"],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr


# ------------------------------------------------------------------------------------------ Prometheus
def test_prometheus_scrapes_every_tpserve_service(services):
    prom = load_yaml(DEPLOY / "prometheus/prometheus.yml")
    routes = app_routes()
    targets = {}
    for job in prom["scrape_configs"]:
        for sc in job.get("static_configs", []):
            for t in sc["targets"]:
                targets[t] = job
    for name, s in tpserve_services(services).items():
        t = f"{name}:{container_port(s)}"
        assert t in targets, f"Prometheus does not scrape {t}"
        path = targets[t].get("metrics_path", "/metrics")
        assert "GET" in routes.get(path, ()) and path in settings_default("open_paths")
    prom_service = next(n for n, s in services.items() if s["image"].startswith("prom/prometheus"))
    mounts = {v.split(":")[1]: v.split(":")[0] for v in services[prom_service]["volumes"] if v.startswith("./")}
    for rf in prom.get("rule_files", []):
        assert rf in mounts, f"rule file {rf} is not mounted into the Prometheus container"


def test_alert_rules_use_real_metrics_and_labels():
    rules = load_yaml(DEPLOY / "prometheus/rules.yml")
    for g in rules["groups"]:
        for r in g["rules"]:
            chk = check_promql(r["expr"])
            assert not chk.problems, f"{r.get('alert')}: {chk.problems}"
            used = set(re.findall(r"\$labels\.(\w+)", json.dumps(r.get("annotations", {}))))
            assert used <= output_labels(chk), f"{r.get('alert')}: annotations use {used - output_labels(chk)}"


# --------------------------------------------------------------------------------------------- Grafana
@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def _exprs(dashboard):
    for p in dashboard["panels"]:
        for t in p.get("targets", []):
            yield p, t


def test_grafana_provisioning_matches_compose(services, dashboard):
    graf = next(s for s in services.values() if s["image"].startswith("grafana/"))
    mounts = {v.split(":")[0]: v.split(":")[1] for v in graf["volumes"] if v.startswith("./")}
    prov = mounts["./deploy/grafana/provisioning"]
    assert prov == "/etc/grafana/provisioning"
    dash_target = mounts["./deploy/grafana/dashboards"]
    providers = load_yaml(next((DEPLOY / "grafana/provisioning/dashboards").glob("*.yml")))["providers"]
    assert [p["options"]["path"] for p in providers] == [dash_target]
    home = env_of(graf).get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home:
        assert home.startswith(dash_target + "/") and (DEPLOY / "grafana/dashboards" / Path(home).name).is_file()
    ds = load_yaml(next((DEPLOY / "grafana/provisioning/datasources").glob("*.yml")))["datasources"]
    uids = {d["uid"] for d in ds}
    m = re.fullmatch(r"http://([\w-]+):(\d+)", ds[0]["url"])
    assert m and m.group(1) in services and "9090" in m.group(2)
    used = {t["datasource"]["uid"] for _, t in _exprs(dashboard)} | {p["datasource"]["uid"] for p in dashboard["panels"]}
    used |= {v["datasource"]["uid"] for v in dashboard["templating"]["list"] if "datasource" in v}
    assert used <= uids, f"the dashboard refers to datasource(s) {used - uids} that are not provisioned"


def test_dashboard_queries_use_real_metrics_and_labels(dashboard):
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for p, t in _exprs(dashboard):
        chk = check_promql(t["expr"])
        assert chk.metrics, f"panel {p['title']!r}: no tpserve metric in {t['expr']}"
        assert not chk.problems, f"panel {p['title']!r}: {chk.problems}"
        legend = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", t.get("legendFormat", "")))
        assert legend <= output_labels(chk), f"panel {p['title']!r}: legend uses {legend - output_labels(chk)}"
    for v in dashboard["templating"]["list"]:
        q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
        m = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", q)
        assert m and m.group(1) in metric_catalog() and m.group(2) in metric_catalog()[m.group(1)].labels


def test_dashboard_has_the_required_panels(dashboard):
    def panels_using(pattern):
        return [p for p, t in _exprs(dashboard) if re.search(pattern, t["expr"])]

    assert panels_using(r"rate\(tpserve_requests_total"), "request rate"
    assert panels_using(r'tpserve_requests_total\{[^}]*code=~"5'), "error rate"
    lat = panels_using(r"histogram_quantile\(0\.99,.*tpserve_request_duration_seconds_bucket")
    assert lat and panels_using(r"histogram_quantile\(0\.5,.*tpserve_request_duration_seconds_bucket"), "p50/p99"
    assert panels_using(r"\btpserve_queue_rows\b"), "queue rows"
    assert panels_using(r"\btpserve_batch_size_bucket\b"), "batch-size distribution"
    per_device = panels_using(r"tpserve_inference_duration_seconds_bucket")
    assert per_device and any(re.search(r"by \([^)]*\bdevice\b", t["expr"]) for p in per_device
                              for t in p["targets"]), "inference time per device"
    assert panels_using(r"\btpserve_model_info\b"), "model versions"
    for p in dashboard["panels"]:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24 and g["h"] > 0, f"panel {p['title']!r} does not fit the 24-column grid"


def test_every_exported_metric_is_on_the_dashboard_or_in_an_alert(dashboard):
    """A metric the service exports but nobody looks at is usually a forgotten panel."""
    text = DASHBOARD.read_text() + (DEPLOY / "prometheus/rules.yml").read_text()
    families = {m.family for m in metric_catalog().values()}
    missing = sorted(f for f in families if not re.search(rf"\b{f}(_total|_bucket|_sum|_count)?\b", text))
    assert not missing, f"not shown anywhere: {missing}"
