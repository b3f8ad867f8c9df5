"""deploy/k8s: offline schema validation and consistency with the service's routes, settings and metrics."""
from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate  # the dev extra; validates offline with bundled schemas
import pytest

from .helpers import (
    DEPLOY,
    K8S,
    ROOT,
    app_routes,
    load_yaml,
    load_yaml_docs,
    metric_catalog,
    parse_dockerfile,
    pyproject,
    rel,
    settings_default,
    settings_env_names,
    settings_from_env,
    stage_env,
)

K8S_VERSION = "1.30.0"  # the oldest Kubernetes these manifests support (preStop/HPA v2/PDB policy v1)
CRD_GROUPS = ("monitoring.coreos.com/",)
KUSTOMIZE_GROUP = "kustomize.config.k8s.io/"


def kustomizations() -> list[Path]:
    return sorted(K8S.rglob("kustomization.yaml"))


def resources_of(kdir: Path) -> list[dict]:
    """The objects a kustomization lists under ``resources`` (files; directories recursively), as written
    (no patches). Sets metadata.namespace the way kustomize's namespace field does."""
    k = load_yaml(kdir / "kustomization.yaml")
    out = []
    for r in k.get("resources", []):
        p = (kdir / r).resolve()
        if p.is_dir():
            out += resources_of(p)
        else:
            out += load_yaml_docs(p)
    if k.get("namespace"):
        for o in out:
            if o["kind"] != "Namespace":
                o.setdefault("metadata", {})["namespace"] = k["namespace"]
    return out


def all_manifest_files() -> list[Path]:
    """YAML files under deploy/k8s that hold full objects (not kustomizations, patches or Helm values)."""
    listed = set()
    for k in kustomizations():
        for r in load_yaml(k).get("resources", []):
            if (k.parent / r).is_file():
                listed.add((k.parent / r).resolve())
    return sorted(listed)


def kubectl() -> str | None:
    return shutil.which("kubectl")


def kustomize_build(kdir: Path) -> list[dict]:
    exe = kubectl()
    if exe is None:
        pytest.skip("kubectl (for `kubectl kustomize`) is not installed")
    r = subprocess.run([exe, "kustomize", str(kdir)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"kubectl kustomize {rel(kdir)} failed:\n{r.stderr}"
    import yaml

    return [d for d in yaml.safe_load_all(r.stdout) if d]


@pytest.fixture(scope="module")
def base() -> list[dict]:
    return resources_of(K8S)


def one(objs, kind, name=None):
    found = [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def container(deploy: dict, name="tpserve") -> dict:
    return next(c for c in deploy["spec"]["template"]["spec"]["containers"] if c["name"] == name)


def configmap_env(objs) -> dict[str, str]:
    return one(objs, "ConfigMap", "tpserve-config")["data"]


def cpu_cores(q: str) -> float:
    q = str(q)
    return float(q[:-1]) / 1000 if q.endswith("m") else float(q)


def memory_bytes(q: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|K|M|G|T)?", str(q))
    assert m, q
    mult = {None: 1, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    return float(m.group(1)) * mult[m.group(2)]


def validate(obj: dict):
    """Strict schema validation (unknown fields are errors) against the Kubernetes OpenAPI schemas."""
    if obj["apiVersion"].startswith(CRD_GROUPS):
        check_prometheus_operator_object(obj)
        return
    try:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        path = "/".join(str(p) for p in e.path) if hasattr(e, "path") else ""
        pytest.fail(f"{obj['kind']}/{obj['metadata'].get('name')}: {e.message} at {path}")


DURATION_RE = re.compile(r"^(\d+(ms|s|m|h))+$")


def check_prometheus_operator_object(obj: dict):
    """monitoring.coreos.com/v1 is a CRD the bundled schemas lack: check the fields we use by hand."""
    assert obj["apiVersion"] == "monitoring.coreos.com/v1"
    meta = obj["metadata"]
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", meta["name"])
    spec = obj["spec"]
    if obj["kind"] == "ServiceMonitor":
        assert set(spec) <= {"selector", "endpoints", "namespaceSelector", "jobLabel", "targetLabels",
                             "podTargetLabels", "sampleLimit"}, sorted(spec)
        assert spec["selector"]["matchLabels"], "an empty selector would match every Service"
        assert spec["endpoints"]
        for ep in spec["endpoints"]:
            assert set(ep) <= {"port", "path", "interval", "scrapeTimeout", "scheme", "honorLabels",
                               "relabelings", "metricRelabelings", "bearerTokenSecret", "authorization"}, sorted(ep)
            assert isinstance(ep["port"], str), "endpoints[].port is the Service port's *name*"
            for k in ("interval", "scrapeTimeout"):
                if k in ep:
                    assert DURATION_RE.match(ep[k]), f"{k}: {ep[k]!r}"
            if "interval" in ep and "scrapeTimeout" in ep:
                from .helpers import seconds

                assert seconds(ep["scrapeTimeout"]) <= seconds(ep["interval"])
    elif obj["kind"] == "PrometheusRule":
        for g in spec["groups"]:
            assert g["name"] and g["rules"]
            for r in g["rules"]:
                assert ("alert" in r) != ("record" in r) and isinstance(r["expr"], str)
                if "for" in r:
                    assert DURATION_RE.match(r["for"])
    else:
        raise AssertionError(f"no structural check for {obj['kind']}")


# ------------------------------------------------------------------------------------------ validation
@pytest.mark.parametrize("path", all_manifest_files(), ids=rel)
def test_manifest_validates(path):
    for obj in load_yaml_docs(path):
        validate(obj)


@pytest.mark.parametrize("kdir", [k.parent for k in kustomizations()], ids=lambda p: rel(p))
def test_kustomization_references_exist(kdir):
    k = load_yaml(kdir / "kustomization.yaml")
    assert k["apiVersion"].startswith(KUSTOMIZE_GROUP) and k["kind"] in ("Kustomization", "Component")
    refs = list(k.get("resources", [])) + list(k.get("components", []))
    refs += [p["path"] for p in k.get("patches", []) if "path" in p]
    for r in refs:
        assert (kdir / r).exists(), f"{rel(kdir)}: {r} does not exist"
    for r in k.get("components", []):
        assert load_yaml(kdir / r / "kustomization.yaml")["kind"] == "Component"


def rendered_targets() -> dict[str, Path]:
    return {"default": K8S, "gpu": K8S / "overlays/gpu"}


@pytest.mark.parametrize("name", sorted(rendered_targets()))
def test_kustomize_output_validates(name):
    objs = kustomize_build(rendered_targets()[name])
    assert {o["kind"] for o in objs} >= {"Namespace", "ConfigMap", "Deployment", "Service",
                                         "HorizontalPodAutoscaler", "PodDisruptionBudget"}
    for o in objs:
        validate(o)
        if o["kind"] != "Namespace":
            assert o["metadata"].get("namespace") == "tpserve", f"{o['kind']} outside the tpserve namespace"


def test_kustomize_output_with_every_component_validates(tmp_path):
    comps = sorted(p.parent for p in (K8S / "components").glob("*/kustomization.yaml"))
    assert comps
    relk = os.path.relpath(K8S, tmp_path)
    (tmp_path / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: tpserve\n"
        f"resources:\n  - {relk}/base\ncomponents:\n"
        + "".join(f"  - {os.path.relpath(c, tmp_path)}\n" for c in comps))
    objs = kustomize_build(tmp_path)
    for o in objs:
        validate(o)
        if o["kind"] != "Namespace":
            assert o["metadata"].get("namespace") == "tpserve", f"{o['kind']} outside the tpserve namespace"
    hpa = one(objs, "HorizontalPodAutoscaler")
    assert {m["type"] for m in hpa["spec"]["metrics"]} == {"Resource", "Pods"}
    check_service_monitor(objs)


def test_no_secret_values_are_committed():
    for path in sorted(DEPLOY.rglob("*.y*ml")):
        for obj in load_yaml_docs(path):
            assert obj.get("kind") != "Secret", f"{rel(path)} holds a Secret: create it with kubectl instead"


# ---------------------------------------------------------------------------------------- consistency
def test_probes_hit_real_routes_on_the_served_port(base):
    routes = app_routes()
    dep = one(base, "Deployment", "tpserve")
    c = container(dep)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    env = configmap_env(base)
    assert ports["http"] == int(env.get("TPSERVE_PORT", settings_default("port")))
    assert ports["grpc"] == int(env.get("TPSERVE_GRPC_PORT", settings_default("grpc_port")))
    probes = {k: c[k] for k in ("startupProbe", "readinessProbe", "livenessProbe") if k in c}
    assert probes["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert probes["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for kind, probe in probes.items():
        path, port = probe["httpGet"]["path"], probe["httpGet"]["port"]
        assert "GET" in routes.get(path, ()), f"{kind} path {path} is not a GET route of the app"
        assert port in ports or port in ports.values(), f"{kind} port {port!r} is no container port"
        assert path in settings_default("open_paths"), f"{path} would need an API key when TPSERVE_API_KEYS is set"
    assert probes["livenessProbe"]["httpGet"]["path"] != "/readyz", "liveness must not restart pods that load models"


def test_service_and_selectors_match_the_pods(base):
    dep = one(base, "Deployment", "tpserve")
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    assert dep["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    svc = one(base, "Service", "tpserve")
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    c = container(dep)
    names = {p["name"] for p in c["ports"]}
    numbers = {p["containerPort"] for p in c["ports"]}
    for p in svc["spec"]["ports"]:
        assert p["targetPort"] in names or p["targetPort"] in numbers
    pdb = one(base, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    hpa = one(base, "HorizontalPodAutoscaler")
    ref = hpa["spec"]["scaleTargetRef"]
    assert (ref["kind"], ref["name"]) == ("Deployment", dep["metadata"]["name"])
    min_available = pdb["spec"]["minAvailable"]
    assert isinstance(min_available, int) and min_available < hpa["spec"]["minReplicas"], (
        "with minAvailable >= minReplicas no node could ever be drained")


def test_termination_grace_covers_prestop_drain_and_shutdown(base):
    dep = one(base, "Deployment", "tpserve")
    spec = dep["spec"]["template"]["spec"]
    c = container(dep)
    env = configmap_env(base)
    drain = float(env.get("TPSERVE_DRAIN_GRACE_S", settings_default("drain_grace_s")))
    shutdown = float(env.get("TPSERVE_SHUTDOWN_TIMEOUT_S", settings_default("shutdown_timeout_s")))
    pre = c.get("lifecycle", {}).get("preStop", {})
    pre_s = 0.0
    if "sleep" in pre:
        pre_s = float(pre["sleep"]["seconds"])
    elif "exec" in pre:
        cmd = pre["exec"]["command"]
        assert cmd[0] == "sleep" and len(cmd) == 2, f"unexpected preStop {cmd}"
        pre_s = float(cmd[1])
    assert 0 < pre_s <= 15, "a short preStop sleep lets endpoints and load balancers catch up"
    grace = spec["terminationGracePeriodSeconds"]
    # the last responses: uvicorn's graceful window, or the front ends' stop window (test_compose.uvicorn_close_s)
    from .test_compose import uvicorn_close_s

    uvicorn_s = uvicorn_close_s()
    assert grace > pre_s + drain + shutdown + uvicorn_s, (
        f"terminationGracePeriodSeconds {grace} <= preStop {pre_s} + drain {drain} + shutdown {shutdown} + "
        f"uvicorn {uvicorn_s}: the kubelet would SIGKILL pods that are still finishing work")


def test_pod_security(base):
    dep = one(base, "Deployment", "tpserve")
    spec = dep["spec"]["template"]["spec"]
    c = container(dep)
    psc, csc = spec.get("securityContext", {}), c.get("securityContext", {})
    assert psc.get("runAsNonRoot") is True or csc.get("runAsNonRoot") is True
    df = parse_dockerfile()
    image_uid = int(df.final.all("USER")[-1].args.split(":")[0])
    assert psc.get("runAsUser", image_uid) == image_uid, "runAsUser differs from the image's USER"
    assert csc.get("readOnlyRootFilesystem") is True
    assert csc.get("allowPrivilegeEscalation") is False
    assert csc.get("capabilities", {}).get("drop") == ["ALL"]
    assert csc.get("privileged") is not True
    assert psc.get("seccompProfile", {}).get("type") == "RuntimeDefault"
    tmp_mounts = [m for m in c.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
    assert tmp_mounts, "a read-only root filesystem needs a writable /tmp"
    vols = {v["name"]: v for v in spec.get("volumes", [])}
    assert "emptyDir" in vols[tmp_mounts[0]["name"]]
    assert spec.get("automountServiceAccountToken") is False


def test_resources_and_thread_pools(base):
    c = container(one(base, "Deployment", "tpserve"))
    req, lim = c["resources"]["requests"], c["resources"]["limits"]
    assert cpu_cores(req["cpu"]) <= cpu_cores(lim["cpu"])
    assert memory_bytes(req["memory"]) <= memory_bytes(lim["memory"])
    env = configmap_env(base)
    for k in ("TPSERVE_INTRA_OP_THREADS", "TPSERVE_INTER_OP_THREADS"):
        n = int(env.get(k, 0))
        assert 0 < n <= math.ceil(cpu_cores(lim["cpu"])), (
            f"{k}={n}: set it to at most the CPU limit ({lim['cpu']}); 0 means every core of the node")


def test_compose_limits_the_cpu_server_like_the_pod(base):
    """deploy/README: the compose server is sized like a Kubernetes pod (same CPU and memory limits), so a
    latency or memory figure measured under one holds under the other."""
    from .helpers import COMPOSE, load_yaml

    lim = container(one(base, "Deployment", "tpserve"))["resources"]["limits"]
    svc = load_yaml(COMPOSE)["services"]["tpserve"]
    assert float(svc["cpus"]) == cpu_cores(lim["cpu"])
    # compose's "2g" is 2 GiB (Docker's units are binary)
    m = re.fullmatch(r"(\d+)([mg])", str(svc["mem_limit"]))
    assert m and int(m.group(1)) * {"m": 2**20, "g": 2**30}[m.group(2)] == memory_bytes(lim["memory"])


def test_configmap_is_valid_settings(base, monkeypatch):
    env = configmap_env(base)
    known = settings_env_names()
    assert set(env) <= set(known), sorted(set(env) - set(known))
    assert "TPSERVE_API_KEYS" not in env, "API keys belong in a Secret"
    s = settings_from_env(env, monkeypatch)
    assert str(s.model_repository) == stage_env(parse_dockerfile(), parse_dockerfile().final)["TPSERVE_MODEL_REPOSITORY"]
    assert s.host == "0.0.0.0"


def test_env_of_the_container(base):
    c = container(one(base, "Deployment", "tpserve"))
    known = settings_env_names()
    for e in c.get("env", []):
        if e["name"].startswith("TPSERVE_"):
            assert e["name"] in known
    keys = [e for e in c.get("env", []) if e["name"] == "TPSERVE_API_KEYS"]
    assert len(keys) == 1 and "value" not in keys[0]
    ref = keys[0]["valueFrom"]["secretKeyRef"]
    assert ref["optional"] is True and ref["name"] and ref["key"]
    cm_refs = [r["configMapRef"]["name"] for r in c.get("envFrom", []) if "configMapRef" in r]
    assert cm_refs == ["tpserve-config"]


def test_image_tags_follow_the_project_version(base):
    version = pyproject()["project"]["version"]
    c = container(one(base, "Deployment", "tpserve"))
    assert c["image"] == f"tpserve:{version}"
    k = load_yaml(K8S / "base/kustomization.yaml")
    assert {i["name"]: i["newTag"] for i in k.get("images", [])}.get("tpserve") == version
    gpu = load_yaml(K8S / "overlays/gpu/kustomization.yaml")
    assert {i["name"]: i["newTag"] for i in gpu["images"]}["tpserve"] == f"{version}-gpu"


def test_hpa_custom_metric_variant():
    comp = K8S / "components/queue-autoscaling"
    patch = load_yaml(comp / "hpa-queue-rows.yaml")
    catalog = metric_catalog()
    base_hpa = one(resources_of(K8S), "HorizontalPodAutoscaler")
    merged = {**base_hpa, "spec": {**base_hpa["spec"], "metrics": patch["spec"]["metrics"]}}
    validate(merged)
    pods = [m for m in patch["spec"]["metrics"] if m["type"] == "Pods"]
    assert pods, "the variant scales on a Pods metric"
    for m in pods:
        name = m["pods"]["metric"]["name"]
        assert name in catalog and catalog[name].type == "gauge", f"{name} is not a gauge of service.metrics"
    assert any(m["type"] == "Resource" for m in patch["spec"]["metrics"]), "keep CPU next to the queue metric"
    adapter = load_yaml(comp / "prometheus-adapter-values.yaml")
    rules = adapter["rules"]["custom"]
    served = {r["name"]["as"] for r in rules}
    assert {m["pods"]["metric"]["name"] for m in pods} <= served, "prometheus-adapter must serve the HPA's metric"
    for r in rules:
        assert re.match(r"(\w+)", r["seriesQuery"]).group(1) in catalog


def check_service_monitor(objs):
    sm = one(objs, "ServiceMonitor")
    svc = one(objs, "Service", "tpserve")
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items(), (
        "the ServiceMonitor selects Services by their own labels")
    svc_ports = {p["name"] for p in svc["spec"]["ports"]}
    for ep in sm["spec"]["endpoints"]:
        assert ep["port"] in svc_ports
        path = ep.get("path", "/metrics")
        assert "GET" in app_routes().get(path, ()), f"{path} is not a route"
        assert path in settings_default("open_paths"), f"{path} would need an API key"


def test_service_monitor_and_rules(base):
    mon = K8S / "components/monitoring"
    objs = base + [o for f in sorted(mon.glob("*.yaml")) if f.name != "kustomization.yaml"
                   for o in load_yaml_docs(f)]
    for o in objs:
        if o["apiVersion"].startswith(CRD_GROUPS):
            check_prometheus_operator_object(o)
    check_service_monitor(objs)
    rule = one(objs, "PrometheusRule")
    compose_rules = load_yaml(DEPLOY / "prometheus/rules.yml")
    assert rule["spec"]["groups"] == compose_rules["groups"], (
        "deploy/k8s/components/monitoring/prometheusrule.yaml and deploy/prometheus/rules.yml diverged")


def test_gpu_overlay_adds_gpus_and_auto_device():
    gpu_dir = K8S / "overlays/gpu"
    k = load_yaml(gpu_dir / "kustomization.yaml")
    patches = [load_yaml(gpu_dir / p["path"]) for p in k["patches"]]
    cm = next(p for p in patches if p["kind"] == "ConfigMap")
    assert cm["data"]["TPSERVE_DEVICE"] == "auto"
    dep = next(p for p in patches if p["kind"] == "Deployment")
    c = container(dep)
    assert int(c["resources"]["limits"]["nvidia.com/gpu"]) >= 1
    objs = kustomize_build(gpu_dir)  # skips without kubectl; the checks above ran already
    d = one(objs, "Deployment")
    rc = container(d)
    assert int(rc["resources"]["limits"]["nvidia.com/gpu"]) >= 1
    assert rc["image"].endswith("-gpu")
    env = configmap_env(objs)
    assert env["TPSERVE_DEVICE"] == "auto"
    for key in ("TPSERVE_INTRA_OP_THREADS", "TPSERVE_INTER_OP_THREADS"):
        assert int(env[key]) <= math.ceil(cpu_cores(rc["resources"]["limits"]["cpu"]))


def test_readme_commands_name_existing_paths():
    text = (DEPLOY / "README.md").read_text()
    for m in re.finditer(r"kubectl apply -k (\S+)", text):
        assert (ROOT / m.group(1).rstrip("`:),.")).is_dir(), m.group(0)
    for m in re.finditer(r"-f (deploy/\S+)", text):
        assert (ROOT / m.group(1).rstrip("`:),.")).exists(), m.group(0)
