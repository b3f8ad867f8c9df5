"""Generate service/grpc/kserve_v2_pb2.py and kserve_v2_pb2_grpc.py from protos/kserve_v2.proto, and
service/grpc/tfserving/*_pb2.py (+ apis_pb2_grpc.py) from protos/tfserving/*.proto (TF Serving's gRPC API).

Run ``make protos`` (it installs the pinned grpcio-tools into a throw-away venv under build/ and runs
this script there). The command it runs, from the repository root::

    python -m grpc_tools.protoc -I protos --python_out=service/grpc --grpc_python_out=service/grpc \\
        protos/kserve_v2.proto

(and the same for ``protos/tfserving/framework.proto error_codes.proto apis.proto``), then two edits, so that the committed files need only ``grpcio`` + ``protobuf`` at run time and can
live next to other code that speaks the same protocol:

* the descriptors go into a private ``DescriptorPool``, not protobuf's default one: the package and
  message names must be Triton's (``inference.*``) for wire compatibility, and ``tritonclient.grpc``
  (or any other Triton stub) registers the same names in the default pool; two registrations of one
  name in that pool fail at import;
  The TF Serving files (packages ``tensorflow``, ``tensorflow.error``, ``tensorflow.serving``) share one
  private pool, ``service.grpc.tfserving.POOL``: TensorFlow itself registers those names in the default
  pool, and the embedded server and the tests run with TensorFlow loaded;
* the stub module imports the message module relatively (``from . import ...``).

grpcio-tools 1.74.0 bundles protoc 31.1, whose code declares protobuf gencode 6.31.1: the oldest
runtime TensorFlow 2.21 accepts (protobuf >= 6.31.1), and runtimes up to 7.x load it (7.x with a
warning that the gencode is one major version older).
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "service" / "grpc"
PROTO = "kserve_v2.proto"
TF_OUT = OUT / "tfserving"
TFSERVING = ("error_codes.proto", "framework.proto", "apis.proto")   # dependencies first
HEADER = "# Regenerate with `make protos` (protos/generate.py); do not edit.\n"


def _edit(path: Path, pattern: str, repl: str, count: int | None = 1) -> None:
    text = path.read_text()
    text, n = re.subn(pattern, repl, text, flags=re.M)
    if (count is None and n < 1) or (count is not None and n != count):
        raise SystemExit(f"{path}: {pattern!r} matched {n} times (protoc output changed?)")
    path.write_text(text)


def _protoc(*files: str, grpc_out: bool = True) -> None:
    cmd = [sys.executable, "-m", "grpc_tools.protoc", "-I", "protos", f"--python_out={OUT.relative_to(ROOT)}"]
    if grpc_out:
        cmd.append(f"--grpc_python_out={OUT.relative_to(ROOT)}")
    cmd += [f"protos/{f}" for f in files]
    print(" ".join(cmd[1:]))
    subprocess.run(cmd, cwd=ROOT, check=True)


def main() -> int:
    _protoc(PROTO)
    pb2 = OUT / "kserve_v2_pb2.py"
    _edit(pb2, r"^DESCRIPTOR = _descriptor_pool\.Default\(\)\.AddSerializedFile\(",
          "# A private pool: Triton's own stubs (tritonclient) register these names in the default one.\n"
          "POOL = _descriptor_pool.DescriptorPool()\n"
          "DESCRIPTOR = POOL.AddSerializedFile(")
    pb2.write_text(HEADER + pb2.read_text())
    stub = OUT / "kserve_v2_pb2_grpc.py"
    _edit(stub, r"^import kserve_v2_pb2 as ", "from . import kserve_v2_pb2 as ")
    stub.write_text(HEADER + stub.read_text())
    gencode = re.search(r"Protobuf Python Version: (\S+)", pb2.read_text())
    print(f"wrote {pb2.relative_to(ROOT)} (gencode {gencode.group(1) if gencode else '?'}) and {stub.relative_to(ROOT)}")

    # TF Serving: three files in one private pool (service/grpc/tfserving/__init__.py, not generated)
    _protoc(*(f"tfserving/{f}" for f in TFSERVING), grpc_out=False)
    _protoc("tfserving/apis.proto")         # the services
    for f in TFSERVING:
        path = TF_OUT / f.replace(".proto", "_pb2.py")
        _edit(path, r"^DESCRIPTOR = _descriptor_pool\.Default\(\)\.AddSerializedFile\(",
              "# A private pool: TensorFlow registers these names in the default one.\n"
              "from . import POOL  # noqa: E402\n"
              "DESCRIPTOR = POOL.AddSerializedFile(")
        if f == "apis.proto":
            _edit(path, r"^from tfserving import (\w+) as ", r"from . import \1 as ", None)
        path.write_text(HEADER + path.read_text())
        print(f"wrote {path.relative_to(ROOT)}")
    stub = TF_OUT / "apis_pb2_grpc.py"
    _edit(stub, r"^from tfserving import apis_pb2 as ", "from . import apis_pb2 as ")
    stub.write_text(HEADER + stub.read_text())
    print(f"wrote {stub.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
