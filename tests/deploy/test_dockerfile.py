"""deploy/Dockerfile: lint, consistency with the code, and a run of its own build and start commands
(without Docker, without downloads: see "the image's commands, run here" for what is proven where)."""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.service.fakes import wait_until

from .helpers import (
    DOCKERFILE,
    ROOT,
    Dockerfile,
    Instruction,
    app_routes,
    dockerignore_rules,
    env_pairs,
    expand,
    image_is_pinned,
    is_ignored,
    parse_dockerfile,
    pyproject,
    settings_default,
    stage_env,
)

SECRET_NAME_RE = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|API_?KEYS?|PRIVATE_KEY|CREDENTIAL)", re.I)


@pytest.fixture(scope="module")
def df() -> Dockerfile:
    return parse_dockerfile()


def copies(stage, *, from_stage: bool | None = None) -> list[tuple[dict, list[str], str]]:
    out = []
    for ins in stage.all("COPY"):
        flags, rest = ins.flags_and_rest()
        if from_stage is not None and ("from" in flags) != from_stage:
            continue
        parts = ins.json_args() or rest.split()
        out.append((flags, parts[:-1], parts[-1]))
    return out


# ------------------------------------------------------------------------------------------------ lint
def test_every_base_image_is_pinned_to_a_concrete_version(df):
    assert df.stages, "no FROM"
    stage_names = {s.name for s in df.stages if s.name}
    for s in df.stages:
        if s.base in stage_names:
            continue
        ok, why = image_is_pinned(s.base)
        assert ok, why
        assert "slim" in s.base, f"{s.base}: use a slim base image"
    assert not re.search(r"(?i):latest\b", df.text)


def test_multi_stage_with_a_builder_and_same_base_runtime(df):
    assert len(df.stages) >= 2, "builder + runtime stages expected"
    builder = df.stage("builder")
    # The venv is copied at the same path into a stage on the same base: venvs are not relocatable.
    assert builder.base == df.final.base, "builder and runtime must use the same base image (same python)"
    from_builder = [(src, dst) for flags, src, dst in copies(df.final, from_stage=True) if flags["from"] == "builder"]
    venv = [(src, dst) for src, dst in from_builder if dst.rstrip("/") == "/opt/venv"]
    assert venv, "the runtime stage should COPY --from=builder the virtual environment"
    # The dependencies' venv comes first, at the path it was built at; the project's prefix (built
    # with --prefix, so its scripts already point at /opt/venv/bin/python) is merged into it after.
    assert [s.rstrip("/") for s in venv[0][0]] == ["/opt/venv"], "copy the venv to the same path it was built at"
    assert len(venv) == 2 and venv[1][0] != venv[0][0], "the project goes into the venv as a layer of its own"


def test_dependencies_are_installed_before_the_code_is_copied(df):
    """The dependency layer stays cached while only code changes."""
    builder = df.stage("builder")
    order = [(i.cmd, i) for i in builder.instructions if i.cmd in ("COPY", "RUN")]
    first_copy = next(i for c, i in order if c == "COPY")
    assert first_copy.args.split() == ["pyproject.toml", "requirements.lock", "./"], (
        "the first COPY should bring pyproject.toml and the lock only")
    dep_install = next((i for c, i in order if c == "RUN" and "pip install -r" in i.args), None)
    assert dep_install is not None and dep_install.line > first_copy.line
    code_copies = [i for c, i in order if c == "COPY" and i is not first_copy]
    assert code_copies and all(i.line > dep_install.line for i in code_copies)
    assert any(re.search(r"pip install --no-deps .*--prefix /opt/tpserve \.(\s|$)", i.args)
               for c, i in order if c == "RUN" and i.line > dep_install.line)


def test_every_package_and_the_model_repository_are_copied(df):
    """What pyproject's package finder includes must be in the build; the models in the runtime."""
    include = pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]
    tops = sorted({p.rstrip("*").rstrip(".") for p in include})
    copied = {s.rstrip("/") for _, srcs, _ in copies(df.stage("builder"), from_stage=False) for s in srcs}
    assert set(tops) <= copied, f"packages {sorted(set(tops) - copied)} are not copied into the builder"
    runtime = {s.rstrip("/"): d for _, srcs, d in copies(df.final, from_stage=False) for s in srcs}
    assert runtime.get("model_repository", "").rstrip("/") == "/models"


def test_copy_sources_exist_and_pass_dockerignore(df):
    rules = dockerignore_rules()
    for stage in df.stages:
        for _flags, srcs, _dst in copies(stage, from_stage=False):
            for src in srcs:
                matches = list(ROOT.glob(src.rstrip("/"))) if "*" in src else [ROOT / src.rstrip("/")]
                if "*" not in src:
                    assert matches[0].exists(), f"COPY {src}: not in the repository"
                for m in matches:
                    files = [m] if m.is_file() else [p for p in m.rglob("*") if p.is_file()]
                    assert files, f"COPY {src}: nothing to copy"
                    kept = [f for f in files if not is_ignored(str(f.relative_to(ROOT)), rules)]
                    assert kept, f"COPY {src}: .dockerignore excludes all of it"
                    if m.name == "pyproject.toml" or src.rstrip("/") in ("layers", "model_zoo", "service"):
                        py = [f for f in files if f.suffix == ".py"]
                        assert all(not is_ignored(str(f.relative_to(ROOT)), rules) for f in py)
    # and the context stays small: no venv, git history or caches
    for path in (".venv/bin/python", ".git/HEAD", "service/__pycache__/app.cpython-311.pyc", "tests/conftest.py"):
        assert is_ignored(path, rules), f".dockerignore should exclude {path}"


def test_runs_as_a_numeric_non_root_user(df):
    users = df.final.all("USER")
    assert users, "the runtime stage sets no USER (it would run as root)"
    uid, _, gid = users[-1].args.partition(":")
    assert uid.isdigit() and int(uid) >= 1000, "USER must be numeric (Kubernetes runAsNonRoot checks it) and not root"
    assert not gid or (gid.isdigit() and int(gid) != 0)
    assert users[-1].line > max(i.line for i in df.final.instructions if i.cmd == "RUN"), "USER after the last RUN"


def test_port_host_and_repository_of_the_image(df):
    env = stage_env(df, df.final)
    exposed = [p.split("/")[0] for i in df.final.all("EXPOSE") for p in i.args.split()]
    assert exposed == [env.get("TPSERVE_PORT", str(settings_default("port"))),
                       env.get("TPSERVE_GRPC_PORT", str(settings_default("grpc_port")))]
    assert env.get("TPSERVE_HOST") == "0.0.0.0", "inside a container the server must listen on every interface"
    assert env.get("TPSERVE_MODEL_REPOSITORY") == "/models"
    assert "/opt/venv/bin" in env.get("PATH", "").split(":")[0]


def test_healthcheck_probes_liveness(df):
    hcs = df.final.all("HEALTHCHECK")
    assert len(hcs) == 1, "exactly one HEALTHCHECK in the runtime stage"
    flags, rest = hcs[0].flags_and_rest()
    assert rest.startswith("CMD "), "HEALTHCHECK CMD ..."
    argv = _healthcheck_argv(hcs[0])
    assert argv[0] in ("python", "/bin/sh"), argv
    paths = re.findall(r"127\.0\.0\.1:[^/]+(/\w+)", rest)
    assert paths == ["/healthz"]
    assert "GET" in app_routes()["/healthz"]
    assert "TPSERVE_PORT" in rest, "the health check must follow TPSERVE_PORT"
    assert "curl" not in rest and "wget" not in rest, "the slim image has neither curl nor wget"


def test_cmd_starts_the_console_script(df):
    cmds = df.final.all("CMD")
    assert len(cmds) == 1 and not df.final.all("ENTRYPOINT")
    argv = cmds[0].json_args()
    assert argv is not None, "use the exec form CMD [\"tpserve\"] so SIGTERM reaches the server"
    scripts = pyproject()["project"]["scripts"]
    assert argv[0] in scripts or argv[:3] == ["python", "-m", "service"], argv
    stop = df.final.all("STOPSIGNAL")
    assert not stop or stop[-1].args in ("SIGTERM", "15")


def test_no_secret_in_the_image(df):
    for stage in df.stages:
        for ins in stage.all("ENV") + stage.all("ARG"):
            for k, v in env_pairs(ins):
                assert not (SECRET_NAME_RE.search(k) and v), f"line {ins.line}: {k} carries a value in the image"
    assert not re.search(r"(?i)(password|secret|token)\s*[=:]\s*\S", df.text)


def test_gpu_variant_is_a_build_arg_on_the_tensorflow_requirement(df):
    builder = df.stage("builder")
    args = {k: v for i in builder.all("ARG") for k, v in env_pairs(i)}
    assert args.get("TF_EXTRA", None) == "", "TF_EXTRA should default to empty (CPU)"
    dep = next(i for i in builder.all("RUN") if "pip install -r" in i.args)
    # What the shell makes of the requirement arguments after `pip install -r requirements.txt`:
    extra_args = dep.args.split("pip install -r requirements.txt", 1)[1].strip()
    assert "TF_EXTRA" in extra_args
    for value, expected in (("", ""), ("and-cuda", "tensorflow[and-cuda]")):
        r = subprocess.run(["/bin/sh", "-c", f"printf '%s' {extra_args}"], env={"TF_EXTRA": value},
                           capture_output=True, text=True)
        assert r.stdout == expected, f"TF_EXTRA={value!r}: pip would get {r.stdout!r}"
    deps = pyproject()["project"]["dependencies"]
    assert any(re.match(r"tensorflow\b(?![-_])", d) for d in deps), "pyproject lost its tensorflow requirement"


def test_hadolint_when_available():
    """Runs hadolint (https://github.com/hadolint/hadolint) when it is installed; optional."""
    exe = shutil.which("hadolint")
    if exe is None:
        pytest.skip("hadolint is not installed")
    r = subprocess.run([exe, "--failure-threshold", "warning", str(DOCKERFILE)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


# ------------------------------------------------------------------------- the image's commands, run here
# What a `docker build` + `docker run` of deploy/Dockerfile would prove, split by cost (no Docker engine,
# no network, no second TensorFlow install):
#
# * test_builder_stage_runs_with_a_recording_pip: every builder instruction (ARG/ENV/WORKDIR/COPY/RUN)
#   is executed in order in a throw-away root, COPY honouring .dockerignore, for the CPU and the GPU
#   build argument. Two deviations: `python -m venv` gets --without-pip, and `pip` is a stand-in that
#   records what it was asked (arguments, PIP_CONSTRAINT, the requirements file) instead of downloading;
#   for the project's own `--prefix` install it links the dev install's console scripts into the
#   prefix, so the RUN's own `tpserve --help` check really runs. The recorded calls are then checked:
#   the dependency install hands pip exactly pyproject's dependencies with the right TensorFlow wheel,
#   under the lock file; the project install is non-editable, without dependencies, into the prefix the
#   runtime stage copies into the venv.
# * test_every_requirement_the_image_installs_is_locked: the lock pins every requirement the image
#   installs, at a version the requirement accepts, and is closed: every requirement of every locked
#   package installed here is pinned too (what pip's resolver would check, without downloading).
# * test_every_package_goes_into_the_wheel: setuptools' package finder, run on the build context,
#   finds every package of the source tree (what `pip install .` would put in the wheel).
# * test_image_cmd_and_healthcheck_serve_the_bundled_models_and_drain: the runtime stage's CMD and
#   HEALTHCHECK, with the stage's ENV and /opt/venv mapped to this checkout's .venv (the same
#   dependencies, already installed), serve the COPY'd model repository; SIGTERM drains and exits 0.
#
# Not run here: the wheel build itself (it needs setuptools>=77 from the index) and the pip downloads;
# a real `docker build` covers them (/work/shared/docker-try.sh on a machine with Docker).
PIP_STANDIN = """#!{python}
import json, os, sys
from pathlib import Path

args = sys.argv[1:]
record = {{"args": args, "cwd": os.getcwd(), "constraint": os.environ.get("PIP_CONSTRAINT")}}
if "-r" in args:
    record["requirements"] = Path(args[args.index("-r") + 1]).read_text()
with open(os.environ["TPSERVE_TEST_PIP_RECORD"], "a") as f:
    f.write(json.dumps(record) + "\\n")
if "--prefix" in args:
    prefix = Path(args[args.index("--prefix") + 1])
    (prefix / "lib" / "python{major}.{minor}" / "site-packages").mkdir(parents=True, exist_ok=True)
    (prefix / "bin").mkdir(exist_ok=True)
    for name in json.loads(os.environ["TPSERVE_TEST_PIP_SCRIPTS"]):
        (prefix / "bin" / name).symlink_to(Path(os.environ["TPSERVE_TEST_PIP_SCRIPTS_FROM"]) / name)
"""


def _mapper(mapped: dict[str, Path]):
    """Rewrite the image's absolute paths (longest first) to where they live on this machine."""
    def host(text: str) -> str:
        for p in sorted(mapped, key=len, reverse=True):
            text = re.sub(rf"(?<![\w./-]){re.escape(p)}(?=/|\b|$)", str(mapped[p]), text)
        return text
    return host


def _copy(ins: Instruction, cwd: Path, host, rules):
    """COPY from the build context (this checkout) as Docker does, .dockerignore honoured."""
    flags, srcs, dst = _copy_args(ins)
    assert "from" not in flags
    for src in srcs:
        for m in (sorted(ROOT.glob(src)) if "*" in src else [ROOT / src]):
            r = str(m.relative_to(ROOT))
            target = Path(host(dst)) if dst.startswith("/") else cwd / dst
            if m.is_file():
                _copy_into(r, target / m.name if dst.endswith("/") else target, rules)
            else:
                _copy_into(r, target, rules)


def _run_builder(tmp: Path, tf_extra: str) -> tuple[list[dict], dict[str, Path]]:
    """Execute the builder stage (see above); returns pip's recorded calls and the path mapping."""
    df = parse_dockerfile()
    rules = dockerignore_rules()
    rootfs = tmp / "rootfs"
    rootfs.mkdir()
    mapped = {p: rootfs / p.lstrip("/") for p in
              {"/opt", "/models"} | {i.args for s in df.stages for i in s.all("WORKDIR")}}
    host = _mapper(mapped)
    shim = tmp / "shim"
    shim.mkdir()
    (shim / "python").symlink_to(Path(sys.base_prefix) / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}")
    (shim / "pip").write_text(PIP_STANDIN.format(python=sys.executable, major=sys.version_info[0],
                                                 minor=sys.version_info[1]))
    (shim / "pip").chmod(0o755)
    record = tmp / "pip.jsonl"
    record.touch()
    env = {"PATH": f"{shim}:/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp), "LANG": "C.UTF-8",
           "TPSERVE_TEST_PIP_RECORD": str(record), "TPSERVE_TEST_PIP_SCRIPTS_FROM": str(Path(sys.executable).parent),
           "TPSERVE_TEST_PIP_SCRIPTS": json.dumps(list(pyproject()["project"]["scripts"]))}
    args, cwd = {"TF_EXTRA": tf_extra}, rootfs
    for ins in df.stage("builder").instructions:
        if ins.cmd == "ARG":
            for k, v in env_pairs(ins):
                args.setdefault(k, v)
        elif ins.cmd == "ENV":
            for k, v in env_pairs(ins):
                env[k] = host(expand(v, {**args, **env}))
        elif ins.cmd == "WORKDIR":
            cwd = Path(host(ins.args))
            cwd.mkdir(parents=True, exist_ok=True)
        elif ins.cmd == "COPY":
            _copy(ins, cwd, host, rules)
        elif ins.cmd == "RUN":
            cmd = re.sub(r"\bpython -m venv\b", "python -m venv --without-pip", host(ins.args))
            r = subprocess.run(["/bin/sh", "-c", cmd], cwd=cwd, env={**env, **args}, capture_output=True, text=True,
                               timeout=120)
            assert r.returncode == 0, f"RUN (line {ins.line}) failed:\n{ins.args}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
        elif ins.cmd != "LABEL":
            raise AssertionError(f"builder instruction {ins.cmd} (line {ins.line}) is not emulated here")
    calls = [json.loads(line) for line in record.read_text().splitlines()]
    return calls, mapped


def _requirement_lines(text: str) -> list[str]:
    return [x.strip() for x in text.splitlines() if x.strip() and not x.strip().startswith("#")]


@pytest.mark.parametrize("tf_extra", ["", "and-cuda"], ids=["cpu", "gpu"])
def test_builder_stage_runs_with_a_recording_pip(tf_extra, tmp_path):
    from packaging.requirements import Requirement

    calls, mapped = _run_builder(tmp_path, tf_extra)
    assert [c["args"][0] for c in calls] == ["install", "install"], calls
    deps, code = calls
    # 1) dependencies: exactly pyproject's, TensorFlow as the variant's wheel, under the lock
    assert deps["args"][1:3] == ["-r", "requirements.txt"] and "--no-deps" not in deps["args"]
    assert deps["constraint"] and Path(deps["constraint"]).read_bytes() == (ROOT / "requirements.lock").read_bytes()
    wanted = _requirement_lines(deps["requirements"]) + deps["args"][3:]
    names = [Requirement(r).name for r in wanted]
    declared = [Requirement(r) for r in pyproject()["project"]["dependencies"]]
    assert sorted(set(names) - {"tensorflow", "tensorflow-cpu"}) == sorted(
        {r.name for r in declared} - {"tensorflow"}), "the image must install pyproject's dependencies"
    tf = [Requirement(r) for r in wanted if Requirement(r).name.startswith("tensorflow")]
    if tf_extra:
        assert [(r.name, r.extras) for r in tf] == [("tensorflow", {"and-cuda"})], wanted
    else:
        assert [r.name for r in tf] == ["tensorflow-cpu"], f"the CPU image must not install the full wheel: {wanted}"
        declared_tf = next(r for r in declared if r.name == "tensorflow")
        assert tf[0].specifier == declared_tf.specifier, "tensorflow-cpu keeps pyproject's version range"
    # 2) the project: non-editable, no dependencies, into the prefix the runtime merges into the venv
    assert code["args"][-1] == "." and "--no-deps" in code["args"]
    assert not {"-e", "--editable"} & set(code["args"])
    prefix = code["args"][code["args"].index("--prefix") + 1]
    image_prefix = next(p + prefix[len(str(h)):] for p, h in mapped.items() if prefix.startswith(str(h)))
    from_builder = [([x.rstrip("/") for x in srcs], dst.rstrip("/"))
                    for flags, srcs, dst in copies(parse_dockerfile().final, from_stage=True) if flags["from"] == "builder"]
    assert ([image_prefix.rstrip("/")], "/opt/venv") in from_builder, (image_prefix, from_builder)


def _lock() -> dict[str, str]:
    from packaging.utils import canonicalize_name

    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;]+)", line)
        if m:
            pins[canonicalize_name(m.group(1))] = m.group(2)
    return pins


def test_every_requirement_the_image_installs_is_locked():
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pins = _lock()
    assert pins, "requirements.lock pins nothing"

    def check(req: Requirement, why: str, extras=("",)):
        if req.marker is not None and not any(req.marker.evaluate({"extra": e}) for e in extras):
            return
        name = canonicalize_name(req.name)
        assert name in pins, f"{req} ({why}) is not in requirements.lock"
        assert req.specifier.contains(pins[name], prereleases=True), f"{req} ({why}): the lock pins {pins[name]}"

    project = pyproject()["project"]
    for r in project["dependencies"]:
        check(Requirement(r), "pyproject")
    for extra, reqs in project.get("optional-dependencies", {}).items():
        for r in reqs:
            check(Requirement(r), f"pyproject [{extra}]")
    tf = Requirement(next(r for r in project["dependencies"] if Requirement(r).name == "tensorflow"))
    check(Requirement(f"tensorflow-cpu{tf.specifier}"), "the CPU image's wheel")
    assert pins["tensorflow-cpu"] == pins["tensorflow"], "the CPU and GPU images must get the same TensorFlow"
    # closed: what every locked package installed here requires is locked too, at an accepted version
    checked = 0
    for dist in metadata.distributions():
        name = canonicalize_name(dist.metadata["Name"])
        if name not in pins or name == "tpserve":
            continue
        checked += 1
        for r in dist.requires or []:
            check(Requirement(r), f"required by {name}")
    assert checked >= len(pins) // 2, f"only {checked} of the {len(pins)} locked packages are installed here"


def test_every_package_goes_into_the_wheel(tmp_path):
    from setuptools import find_packages

    df = parse_dockerfile()
    rules = dockerignore_rules()
    context = tmp_path / "src"
    for ins in df.stage("builder").all("COPY"):
        _copy(ins, context, lambda p: str(context / p.lstrip("/")), rules)
    include = pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]
    found = set(find_packages(where=str(context), include=include))
    tops = {p.rstrip("*").rstrip(".") for p in include}
    in_tree = {str(p.parent.relative_to(ROOT)).replace("/", ".") for top in tops for p in (ROOT / top).rglob("__init__.py")
               if "__pycache__" not in p.parts}
    assert in_tree and in_tree <= found, f"packages missing from the wheel: {sorted(in_tree - found)}"


def test_image_cmd_and_healthcheck_serve_the_bundled_models_and_drain(tmp_path):
    """The runtime stage's CMD and HEALTHCHECK with the stage's ENV (TPSERVE_HOST=127.0.0.1 and a free
    port instead, one TensorFlow thread per pool, no drain window): /readyz 200 once the COPY'd models
    are loaded, the HEALTHCHECK passes (and fails against a closed port), and SIGTERM, which the exec-form
    CMD delivers to the server itself, ends it with exit status 0. (The drain window's 503 is
    tests/service/test_drain.py's, on the same server.)"""
    df = parse_dockerfile()
    runtime = df.final
    rules = dockerignore_rules()
    mapped = {"/opt/venv": Path(sys.prefix)} | {p: tmp_path / p.lstrip("/") for p in
                                                {"/models"} | {i.args for i in runtime.all("WORKDIR")}}
    host = _mapper(mapped)
    cwd = tmp_path
    for ins in runtime.instructions:
        if ins.cmd == "COPY" and "from" not in ins.flags_and_rest()[0]:
            _copy(ins, cwd, host, rules)
        elif ins.cmd == "WORKDIR":
            cwd = Path(host(ins.args))
            cwd.mkdir(parents=True, exist_ok=True)
    env = {k: host(v) for k, v in stage_env(df, runtime, {"PATH": "/usr/local/bin:/usr/bin:/bin",
                                                          "HOME": str(tmp_path)}).items()}
    assert any(Path(env["TPSERVE_MODEL_REPOSITORY"]).iterdir()), "no model was copied to the repository"
    port = _free_port()
    env.update(TPSERVE_HOST="127.0.0.1", TPSERVE_PORT=str(port), TPSERVE_DRAIN_GRACE_S="0",
               TPSERVE_INTRA_OP_THREADS="1", TPSERVE_INTER_OP_THREADS="1")
    argv = runtime.all("CMD")[-1].json_args()
    exe = shutil.which(argv[0], path=env["PATH"])
    assert exe and exe.startswith(sys.prefix), f"CMD {argv[0]!r} resolves to {exe}, not the image's venv"
    log = (tmp_path / "server.log").open("w+")
    proc = subprocess.Popen([exe, *argv[1:]], cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"

    def log_tail():
        log.flush()
        log.seek(0)
        return log.read()[-6000:]

    try:
        wait_until(lambda: proc.poll() is not None or _get(base + "/readyz") == 200, "the server to be ready",
                   timeout_s=300, poll_s=0.2)
        assert proc.poll() is None, f"the server exited with {proc.returncode}:\n{log_tail()}"
        assert _get(base + "/healthz") == 200
        # The HEALTHCHECK command, as Docker runs it inside the container.
        hc = _healthcheck_argv(runtime.all("HEALTHCHECK")[-1])
        hc = [shutil.which(hc[0], path=env["PATH"]) or hc[0], *hc[1:]]
        ok = subprocess.run(hc, env=env, capture_output=True, timeout=60)
        assert ok.returncode == 0, ok.stderr.decode()[-2000:]
        bad = subprocess.run(hc, env={**env, "TPSERVE_PORT": str(_free_port())}, capture_output=True, timeout=60)
        assert bad.returncode == 1, "the HEALTHCHECK must fail (exit 1) when nothing answers"
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=120)
        assert rc == 0, f"exit status {rc} after SIGTERM:\n{log_tail()}"
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
        log.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _copy_into(src_rel: str, dest: Path, rules):
    src = ROOT / src_rel.rstrip("/")
    if src.is_file():
        if not is_ignored(src_rel, rules):
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest if not str(dest).endswith("/") else dest / src.name)
        return
    for f in src.rglob("*"):
        r = str(f.relative_to(ROOT))
        if f.is_file() and not is_ignored(r, rules):
            target = dest / f.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, target)


def _get(url: str, timeout: float = 3.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


def _healthcheck_argv(ins: Instruction) -> list[str]:
    """HEALTHCHECK CMD ["exec", "form"] or CMD shell form -> argv."""
    rest = ins.flags_and_rest()[1].removeprefix("CMD").strip()
    return json.loads(rest) if rest.startswith("[") else ["/bin/sh", "-c", rest]


def _copy_args(ins: Instruction) -> tuple[dict, list[str], str]:
    flags, rest = ins.flags_and_rest()
    parts = ins.json_args() or rest.split()
    return flags, parts[:-1], parts[-1]
