"""deploy/Dockerfile: lint, consistency with the code, and a run of its own install and start commands."""
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
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

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
    venv_copies = [(src, dst) for flags, src, dst in copies(df.final, from_stage=True) if flags["from"] == "builder"]
    assert venv_copies, "the runtime stage should COPY --from=builder the virtual environment"
    for src, dst in venv_copies:
        assert [dst.rstrip("/")] == [s.rstrip("/") for s in src], "copy the venv to the same path it was built at"


def test_dependencies_are_installed_before_the_code_is_copied(df):
    """The dependency layer stays cached while only code changes."""
    builder = df.stage("builder")
    order = [(i.cmd, i) for i in builder.instructions if i.cmd in ("COPY", "RUN")]
    first_copy = next(i for c, i in order if c == "COPY")
    assert first_copy.args.split() == ["pyproject.toml", "./"], "the first COPY should bring pyproject.toml only"
    dep_install = next((i for c, i in order if c == "RUN" and "pip install -r" in i.args), None)
    assert dep_install is not None and dep_install.line > first_copy.line
    code_copies = [i for c, i in order if c == "COPY" and i is not first_copy]
    assert code_copies and all(i.line > dep_install.line for i in code_copies)
    assert any("pip install --no-deps ." in i.args for c, i in order if c == "RUN" and i.line > dep_install.line)


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
    assert exposed == [env.get("TPSERVE_PORT", str(settings_default("port")))]
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


@pytest.mark.slow
def test_dockerfile_install_and_start_commands_serve_the_bundled_models():
    """Emulates ``docker build`` + ``docker run`` of deploy/Dockerfile without a Docker engine.

    The builder stage's WORKDIR/COPY/ENV/ARG/RUN instructions are executed in order, in a throw-away
    directory standing for the image's root (``/opt/venv``, ``/src``, ``/models``, ``/app`` are mapped
    under it), with ``python`` being this machine's base CPython 3.11 (the image's base has its own
    3.11). COPY honours .dockerignore. So the RUN lines really create a fresh venv, extract the
    requirements from pyproject.toml, ``pip install`` every dependency from the package index (no
    reuse of .venv; takes about a minute, mostly TensorFlow) and ``pip install --no-deps .`` the
    code as a regular (non-editable) wheel install. Deviations, on purpose: PIP_NO_CACHE_DIR is not
    applied, so pip's cache can serve repeated runs; the runtime stage's only RUN (useradd) is not
    run, as this is no root filesystem of our own.

    Then the runtime stage's CMD runs with its ENV, except TPSERVE_HOST=127.0.0.1 (not every
    interface of the test machine), a free TPSERVE_PORT, one TensorFlow thread per pool and a short
    TPSERVE_DRAIN_GRACE_S; it must answer /readyz with 200 (every bundled model loaded and warm), its
    HEALTHCHECK command must pass (and fail against a closed port), and SIGTERM must turn /readyz to
    503 during the drain window and then end the process with exit status 0.
    """
    df = parse_dockerfile()
    builder, runtime = df.stage("builder"), df.final
    context_rules = dockerignore_rules()
    assert (ROOT / "model_repository").is_dir(), "model_repository/ (COPYed into the image) is missing"

    tmp = Path(tempfile.mkdtemp(prefix="tpserve-image-"))
    proc = log = None
    try:
        rootfs = tmp / "rootfs"
        rootfs.mkdir()
        # The image's absolute paths, mapped under rootfs.
        mapped = {"/opt/venv", "/models"} | {i.args for s in df.stages for i in s.all("WORKDIR")}

        def host(text: str) -> str:
            for p in sorted(mapped, key=len, reverse=True):
                text = re.sub(rf"(?<![\w./-]){re.escape(p)}(?=/|\b|$)", str(rootfs) + p, text)
            return text

        # `python` as the base image provides it: the CPython behind this test's interpreter.
        shim = tmp / "shim"
        shim.mkdir()
        base_python = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
        assert base_python.exists(), base_python
        (shim / "python").symlink_to(base_python)
        keep = ("HOME", "LANG", "LC_ALL", "TMPDIR", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")
        base_env = {k: v for k, v in os.environ.items() if k in keep or k.startswith("PIP_")}
        base_env["PATH"] = f"{shim}:/usr/local/bin:/usr/bin:/bin"

        # ---- builder stage
        env, args, cwd = dict(base_env), {}, rootfs
        for ins in builder.instructions:
            if ins.cmd == "ARG":
                for k, v in env_pairs(ins):
                    args[k] = v
            elif ins.cmd == "ENV":
                for k, v in env_pairs(ins):
                    env[k] = host(expand(v, {**args, **env}))
            elif ins.cmd == "WORKDIR":
                cwd = Path(host(ins.args))
                cwd.mkdir(parents=True, exist_ok=True)
            elif ins.cmd == "COPY":
                flags, srcs, dst = _copy_args(ins)
                assert "from" not in flags
                for src in srcs:
                    for m in (sorted(ROOT.glob(src)) if "*" in src else [ROOT / src]):
                        r = str(m.relative_to(ROOT))
                        target = cwd / dst if not dst.startswith("/") else Path(host(dst))
                        if m.is_file():
                            _copy_into(r, target / m.name if dst.endswith("/") else target, context_rules)
                        else:
                            _copy_into(r, target, context_rules)
            elif ins.cmd == "RUN":
                run_env = {**env, **args}
                run_env.pop("PIP_NO_CACHE_DIR", None)
                r = subprocess.run(["/bin/sh", "-c", host(ins.args)], cwd=cwd, env=run_env,
                                   capture_output=True, text=True, timeout=900)
                assert r.returncode == 0, f"RUN (line {ins.line}) failed:\n{ins.args}\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}"
            elif ins.cmd in ("LABEL",):
                pass
            else:
                raise AssertionError(f"builder instruction {ins.cmd} (line {ins.line}) is not emulated here")

        venv_python = rootfs / "opt/venv/bin/python"
        where = subprocess.run([str(venv_python), "-c", "import layers, model_zoo, service; "
                                "print(service.__file__, layers.__file__, model_zoo.__file__)"],
                               cwd=tmp, capture_output=True, text=True, env={"PATH": base_env["PATH"]})
        assert where.returncode == 0, where.stderr[-3000:]
        assert all(p.startswith(str(rootfs / "opt/venv")) for p in where.stdout.split()), (
            f"the packages should come from the fresh install, not the source tree: {where.stdout}")

        # ---- runtime stage
        for ins in runtime.instructions:
            if ins.cmd == "RUN":
                assert re.fullmatch(r"(groupadd|useradd)\b.*?(\s*&&\s*(groupadd|useradd)\b.*)*", ins.args), (
                    f"runtime RUN (line {ins.line}) does more than create the user; emulate it here")
            elif ins.cmd == "COPY":
                flags, srcs, dst = _copy_args(ins)
                if flags.get("from") == "builder":
                    continue  # same path in both stages (checked by a lint test): already in place
                for src in srcs:
                    _copy_into(src, Path(host(dst)), context_rules)
            elif ins.cmd == "WORKDIR":
                cwd = Path(host(ins.args))
                cwd.mkdir(parents=True, exist_ok=True)
        run_env = {k: host(v) for k, v in stage_env(df, runtime, base_env).items()}
        assert (Path(run_env["TPSERVE_MODEL_REPOSITORY"]) / "digits").is_dir() or any(
            Path(run_env["TPSERVE_MODEL_REPOSITORY"]).iterdir()), "no model was copied to /models"
        port = _free_port()
        run_env.update(TPSERVE_HOST="127.0.0.1", TPSERVE_PORT=str(port), TPSERVE_DRAIN_GRACE_S="3",
                       TPSERVE_INTRA_OP_THREADS="1", TPSERVE_INTER_OP_THREADS="1")
        argv = runtime.all("CMD")[-1].json_args()
        exe = shutil.which(argv[0], path=run_env["PATH"])
        assert exe and exe.startswith(str(rootfs)), f"CMD {argv[0]!r} resolves to {exe}, not the image's venv"
        log = (tmp / "server.log").open("w+")
        proc = subprocess.Popen([exe, *argv[1:]], cwd=cwd, env=run_env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)

        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 300
        status = 0
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            status = _get(base + "/readyz")
            if status == 200:
                break
            time.sleep(1.0)

        def log_tail():
            log.flush()
            log.seek(0)
            return log.read()[-6000:]

        assert status == 200, f"/readyz never answered 200 (last {status}, exit {proc.poll()}):\n{log_tail()}"
        assert _get(base + "/healthz") == 200

        # The HEALTHCHECK command, as Docker runs it inside the container.
        hc = _healthcheck_argv(runtime.all("HEALTHCHECK")[-1])
        hc = [shutil.which(hc[0], path=run_env["PATH"]) or hc[0], *hc[1:]]
        ok = subprocess.run(hc, env=run_env, capture_output=True, timeout=30)
        assert ok.returncode == 0, ok.stderr.decode()[-2000:]
        bad = subprocess.run(hc, env={**run_env, "TPSERVE_PORT": str(_free_port())}, capture_output=True, timeout=30)
        assert bad.returncode == 1, "the HEALTHCHECK must fail (exit 1) when nothing answers"

        # SIGTERM: readiness must turn 503 at once while the server still answers (the drain window).
        proc.send_signal(signal.SIGTERM)
        t_term = time.monotonic()
        ready = 200
        while time.monotonic() - t_term < float(run_env["TPSERVE_DRAIN_GRACE_S"]) - 0.5:
            ready = _get(base + "/readyz", timeout=1.0)
            if ready == 503:
                break
            time.sleep(0.1)
        assert ready == 503, f"/readyz answered {ready} after SIGTERM, not 503 (the drain window)"
        limit = float(run_env["TPSERVE_DRAIN_GRACE_S"]) + float(
            run_env.get("TPSERVE_SHUTDOWN_TIMEOUT_S", settings_default("shutdown_timeout_s"))) + 15
        try:
            rc = proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the server did not exit within {limit:.0f} s of SIGTERM:\n{log_tail()}")
        assert rc == 0, f"exit status {rc} after SIGTERM:\n{log_tail()}"
    finally:
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
        if log is not None:
            log.close()
        shutil.rmtree(tmp, ignore_errors=True)


def _healthcheck_argv(ins: Instruction) -> list[str]:
    """HEALTHCHECK CMD ["exec", "form"] or CMD shell form -> argv."""
    rest = ins.flags_and_rest()[1].removeprefix("CMD").strip()
    return json.loads(rest) if rest.startswith("[") else ["/bin/sh", "-c", rest]


def _copy_args(ins: Instruction) -> tuple[dict, list[str], str]:
    flags, rest = ins.flags_and_rest()
    parts = ins.json_args() or rest.split()
    return flags, parts[:-1], parts[-1]
