"""Readers for the deployment files (Dockerfile, .dockerignore, compose, Kubernetes, PromQL) and the
facts of the service they must agree with, derived from the code rather than listed by hand."""
from __future__ import annotations

import json
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import yaml
from pydantic import BaseModel

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE = ROOT / "docker-compose.yml"
K8S = DEPLOY / "k8s"
README = DEPLOY / "README.md"
PYPROJECT = ROOT / "pyproject.toml"

ENV_PREFIX = "TPSERVE_"
ENV_NAME_RE = re.compile(r"\bTPSERVE_[A-Z0-9_]*[A-Z0-9]\b")


# ----------------------------------------------------------------------------------------------- files
def deploy_files(*suffixes: str) -> list[Path]:
    """Every file under deploy/ with one of ``suffixes`` (sorted), plus docker-compose.yml for YAML."""
    files = sorted(p for p in DEPLOY.rglob("*") if p.is_file() and p.suffix in suffixes)
    if ".yml" in suffixes or ".yaml" in suffixes:
        files.append(COMPOSE)
    return files


def load_yaml_docs(path: Path) -> list:
    with path.open() as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def load_yaml(path: Path):
    docs = load_yaml_docs(path)
    assert len(docs) == 1, f"{path} should hold one YAML document, holds {len(docs)}"
    return docs[0]


def pyproject() -> dict:
    with PYPROJECT.open("rb") as f:
        return tomllib.load(f)


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


# -------------------------------------------------------------------------------------------- settings
def settings_env_names() -> dict[str, tuple[str, ...]]:
    """``TPSERVE_*`` name -> field path, for every field of Settings (nested models give both
    ``TPSERVE_BATCHING`` and ``TPSERVE_BATCHING__MAX_BATCH_SIZE``)."""
    from service.settings import Settings

    prefix = Settings.model_config.get("env_prefix", "")
    delim = Settings.model_config.get("env_nested_delimiter")
    assert prefix == ENV_PREFIX and delim == "__", "Settings' env prefix/delimiter changed: update tests/deploy"
    out: dict[str, tuple[str, ...]] = {}

    def walk(model: type[BaseModel], path: tuple[str, ...]):
        for name, f in model.model_fields.items():
            p = (*path, name)
            out[prefix + delim.join(p).upper()] = p
            ann = f.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                walk(ann, p)

    walk(Settings, ())
    return out


def settings_leaf_fields() -> dict[str, object]:
    """``TPSERVE_*`` name -> pydantic FieldInfo of every settable leaf field (nested models expanded)."""
    from service.settings import Settings

    out = {}

    def walk(model, path):
        for name, f in model.model_fields.items():
            ann = f.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                walk(ann, (*path, name))
            else:
                out[ENV_PREFIX + "__".join((*path, name)).upper()] = f

    walk(Settings, ())
    return out


def settings_from_env(env: dict[str, str], monkeypatch):
    """Settings() as the service would build it from exactly these environment variables."""
    import os

    from service.settings import Settings

    for k in list(os.environ):
        if k.startswith(ENV_PREFIX):
            monkeypatch.delenv(k)
    for k, v in env.items():
        monkeypatch.setenv(k, str(v))
    return Settings()


# --------------------------------------------------------------------------------------------- metrics
@dataclass
class MetricInfo:
    family: str
    type: str
    labels: frozenset[str]


@cache
def metric_catalog() -> dict[str, MetricInfo]:
    """Every series name the service can export (``_total``/``_bucket``/... expanded) -> its metric."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics import MetricWrapperBase

    from service.metrics import Metrics

    metrics = Metrics(CollectorRegistry())
    suffixes = {"counter": ("_total", "_created"), "gauge": ("",),
                "histogram": ("_bucket", "_sum", "_count", "_created"), "summary": ("", "_sum", "_count", "_created")}
    out: dict[str, MetricInfo] = {}
    for collector in vars(metrics).values():
        if not isinstance(collector, MetricWrapperBase):
            continue
        # prometheus_client keeps the label names only privately; there is no public accessor.
        labels = frozenset(collector._labelnames)
        for desc in collector.describe():
            for suffix in suffixes[desc.type]:
                extra = {"le"} if suffix == "_bucket" else set()
                out[desc.name + suffix] = MetricInfo(desc.name, desc.type, labels | extra)
    assert out, "service.metrics.Metrics registered no metric"
    return out


_METRIC_RE = re.compile(r"\b(tpserve_[a-zA-Z0-9_]+)\b")
_SELECTOR_RE = re.compile(r"\b(tpserve_[a-zA-Z0-9_]+)\s*\{([^}]*)\}")
_MATCHER_RE = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)")
_GROUPING_RE = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_QUANTILE_FN = re.compile(r"histogram_quantile\s*\(")


@dataclass
class PromQLCheck:
    expr: str
    metrics: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)
    grouping_labels: set[str] = field(default_factory=set)
    metric_labels: set[str] = field(default_factory=set)


def check_promql(expr: str, extra_metrics: frozenset[str] = frozenset()) -> PromQLCheck:
    """Names of tpserve metrics and the labels an expression uses must exist in service.metrics."""
    catalog = metric_catalog()
    res = PromQLCheck(expr)
    # Grafana variables are not PromQL: $__rate_interval -> 1m, $model -> x.
    text = re.sub(r"\$__\w+", "1m", expr)
    text = re.sub(r"\$\{?\w+\}?", "x", text)
    for name in _METRIC_RE.findall(text):
        if name not in catalog:
            res.problems.append(f"unknown metric {name!r}")
            continue
        res.metrics.add(name)
        res.metric_labels |= catalog[name].labels
    for name, body in _SELECTOR_RE.findall(text):
        if name not in catalog:
            continue
        for label, _op in _MATCHER_RE.findall(body):
            if label not in catalog[name].labels:
                res.problems.append(f"{name} has no label {label!r} (labels: {sorted(catalog[name].labels)})")
    for body in _GROUPING_RE.findall(text):
        labels = {x.strip() for x in body.split(",") if x.strip()}
        res.grouping_labels |= labels
        if res.metrics:
            unknown = labels - res.metric_labels
            if unknown:
                res.problems.append(f"grouping by unknown label(s) {sorted(unknown)}; metrics here have "
                                    f"{sorted(res.metric_labels)}")
    if _QUANTILE_FN.search(text):
        buckets = [m for m in res.metrics if m.endswith("_bucket")]
        if not buckets:
            res.problems.append("histogram_quantile over no tpserve *_bucket series")
        elif "le" not in res.grouping_labels:
            res.problems.append("histogram_quantile needs the aggregation to keep 'le' (sum by (le, ...))")
    return res


def output_labels(check: PromQLCheck) -> set[str]:
    """Labels a result series can carry: the aggregation's labels, else the metrics' own + target labels."""
    if check.grouping_labels:
        return set(check.grouping_labels)
    return check.metric_labels | {"job", "instance"}


# ------------------------------------------------------------------------------------------ Dockerfile
@dataclass
class Instruction:
    cmd: str           # upper case
    args: str          # the raw argument text (continuations joined)
    line: int

    def json_args(self) -> list[str] | None:
        a = self.args.strip()
        if a.startswith("["):
            return json.loads(a)
        return None

    def flags_and_rest(self) -> tuple[dict[str, str], str]:
        """``--from=builder --chown=1:1 src dst`` -> ({"from": "builder", ...}, "src dst")."""
        flags, rest = {}, self.args.strip()
        while rest.startswith("--"):
            token, _, rest = rest.partition(" ")
            k, _, v = token[2:].partition("=")
            flags[k] = v
            rest = rest.lstrip()
        return flags, rest


@dataclass
class Stage:
    base: str          # FROM's image reference, ARGs expanded
    name: str | None
    instructions: list[Instruction]

    def all(self, cmd: str) -> list[Instruction]:
        return [i for i in self.instructions if i.cmd == cmd]


@dataclass
class Dockerfile:
    global_args: dict[str, str]
    stages: list[Stage]
    text: str

    def stage(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(name)

    @property
    def final(self) -> Stage:
        return self.stages[-1]


def logical_lines(text: str) -> list[tuple[int, str]]:
    """Dockerfile lines with ``\\`` continuations joined and comment lines dropped."""
    out, buf, start = [], "", None
    for n, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not buf):
            continue
        if start is None:
            start = n
        if raw.rstrip().endswith("\\"):
            buf += raw.rstrip()[:-1] + " "
            continue
        buf += raw
        out.append((start, buf.strip()))
        buf, start = "", None
    if buf.strip():
        out.append((start, buf.strip()))
    return out


def expand(value: str, env: dict[str, str]) -> str:
    """Docker's variable substitution: $VAR, ${VAR}, ${VAR:-default}, ${VAR:+alternative}."""

    def repl(m: re.Match) -> str:
        name = m.group("name") or m.group("bare")
        op, word = m.group("op"), m.group("word")
        val = env.get(name, "")
        if op == ":-":
            return val or expand(word, env)
        if op == ":+":
            return expand(word, env) if val else ""
        return val

    return re.sub(r"\$(?:\{(?P<name>\w+)(?:(?P<op>:[-+])(?P<word>[^}]*))?\}|(?P<bare>[A-Za-z_]\w*))", repl, value)


def parse_dockerfile(path: Path = DOCKERFILE) -> Dockerfile:
    text = path.read_text()
    assert "<<" not in re.sub(r"(?m)^\s*#.*$", "", text), "heredocs are not supported by these tests"
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line, logical in logical_lines(text):
        cmd, _, args = logical.partition(" ")
        ins = Instruction(cmd.upper(), args.strip(), line)
        if ins.cmd == "FROM":
            parts = ins.args.split()
            ref = expand(parts[0], global_args)
            name = parts[2] if len(parts) == 3 and parts[1].lower() == "as" else None
            stages.append(Stage(ref, name, []))
        elif not stages:
            assert ins.cmd == "ARG", f"line {line}: only ARG may come before the first FROM"
            k, _, v = ins.args.partition("=")
            global_args[k] = shlex.split(v)[0] if v else ""
        else:
            stages[-1].instructions.append(ins)
    return Dockerfile(global_args, stages, text)


def env_pairs(ins: Instruction) -> list[tuple[str, str]]:
    """``ENV A=1 B="x y"`` / ``ARG A=1`` -> [("A", "1"), ("B", "x y")] (values unexpanded)."""
    pairs = []
    for token in shlex.split(ins.args, posix=True):
        k, eq, v = token.partition("=")
        if not eq and ins.cmd == "ENV":
            raise AssertionError(f"line {ins.line}: use the ENV key=value form")
        pairs.append((k, v))
    return pairs


def stage_env(df: Dockerfile, stage: Stage, base_env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a stage's CMD sees: ENV instructions in order (ARG defaults usable in them)."""
    env = dict(base_env or {})
    args: dict[str, str] = {}
    for ins in stage.instructions:
        if ins.cmd == "ARG":
            for k, v in env_pairs(ins):
                args[k] = v or df.global_args.get(k, "")
        elif ins.cmd == "ENV":
            for k, v in env_pairs(ins):
                env[k] = expand(v, {**args, **env})
    return env


# --------------------------------------------------------------------------------------- .dockerignore
def _pattern_regex(pattern: str) -> re.Pattern:
    out, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            if pattern.startswith("/", i):
                out = out[:-2] + "(?:.*/)?"
                i += 1
            continue
        out += {"*": "[^/]*", "?": "[^/]"}.get(c, re.escape(c))
        i += 1
    return re.compile(out + r"\Z")


def dockerignore_rules(path: Path = DOCKERIGNORE) -> list[tuple[bool, re.Pattern]]:
    rules = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pat = line[1:].strip() if negate else line
        pat = pat.strip("/") or "."
        rules.append((negate, _pattern_regex(pat)))
    return rules


def is_ignored(relpath: str, rules) -> bool:
    """Docker's rule: the last pattern that matches the path or one of its parent directories wins."""
    parts = relpath.strip("/").split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for negate, rx in rules:
        if any(rx.match(p) for p in prefixes):
            ignored = not negate
    return ignored


# ---------------------------------------------------------------------------------------------- images
IMAGE_TAG_RE = re.compile(r"^(?P<name>[^:@]+(?::\d+/[^:@]+)?)(?::(?P<tag>[\w][\w.-]*))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?$")


def image_is_pinned(ref: str) -> tuple[bool, str]:
    m = IMAGE_TAG_RE.match(ref)
    if not m:
        return False, f"cannot parse image reference {ref!r}"
    tag, digest = m.group("tag"), m.group("digest")
    if digest:
        return True, ""
    if not tag:
        return False, f"{ref!r} has no tag (means :latest)"
    if "latest" in tag.lower():
        return False, f"{ref!r} uses a floating 'latest' tag"
    if not re.search(r"\d+\.\d+\.\d+", tag):
        return False, f"{ref!r}: tag {tag!r} is not a concrete major.minor.patch version (it would float)"
    return True, ""


# ------------------------------------------------------------------------------------------ app routes
@cache
def app_routes() -> dict[str, frozenset[str]]:
    """path -> HTTP methods of the real app (built without loading any model)."""
    from prometheus_client import CollectorRegistry

    from service.app import create_app
    from service.settings import Settings

    class _NoRepository:
        def scan(self):  # pragma: no cover - the lifespan never runs here
            return []

        def load(self, *a, **k):  # pragma: no cover
            raise AssertionError("not used")

    app = create_app(Settings(), registry=CollectorRegistry(), repository=_NoRepository())
    out: dict[str, set[str]] = {}
    for r in app.routes:
        methods = getattr(r, "methods", None)
        if methods:
            out.setdefault(r.path, set()).update(methods)
    return {k: frozenset(v) for k, v in out.items()}


def settings_default(name: str):
    """The default of a top-level Settings field."""
    from service.settings import Settings

    return Settings.model_fields[name].get_default(call_default_factory=True)


# ------------------------------------------------------------------------------------------- durations
def seconds(value) -> float:
    """``45s``/``1m30s``/``2m``/``500ms``/45 -> seconds (compose and Prometheus duration syntax)."""
    if isinstance(value, (int, float)):
        return float(value)
    total, rest = 0.0, str(value).strip()
    for num, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", rest):
        total += float(num) * {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6}[unit]
    assert re.fullmatch(r"(?:\d+(?:\.\d+)?(?:ms|us|h|m|s))+", rest), f"not a duration: {value!r}"
    return total
