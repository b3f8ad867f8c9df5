"""Generate service/grpc/kserve_v2_pb2.py and kserve_v2_pb2_grpc.py from protos/kserve_v2.proto.

Run ``make protos`` (it installs the pinned grpcio-tools into a throw-away venv under build/ and runs
this script there). The command it runs, from the repository root::

    python -m grpc_tools.protoc -I protos --python_out=service/grpc --grpc_python_out=service/grpc \\
        protos/kserve_v2.proto

then two edits, so that the committed files need only ``grpcio`` + ``protobuf`` at run time and can
live next to other code that speaks the same protocol:

* the descriptors go into a private ``DescriptorPool``, not protobuf's default one: the package and
  message names must be Triton's (``inference.*``) for wire compatibility, and ``tritonclient.grpc``
  (or any other Triton stub) registers the same names in the default pool; two registrations of one
  name in that pool fail at import;
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
HEADER = "# Regenerate with `make protos` (protos/generate.py); do not edit.\n"


def main() -> int:
    cmd = [sys.executable, "-m", "grpc_tools.protoc", "-I", "protos", f"--python_out={OUT.relative_to(ROOT)}",
           f"--grpc_python_out={OUT.relative_to(ROOT)}", f"protos/{PROTO}"]
    print(" ".join(cmd[1:]))
    subprocess.run(cmd, cwd=ROOT, check=True)
    pb2 = OUT / "kserve_v2_pb2.py"
    text = pb2.read_text()
    text, n = re.subn(r"^DESCRIPTOR = _descriptor_pool\.Default\(\)\.AddSerializedFile\(",
                      "# A private pool: Triton's own stubs (tritonclient) register these names in the default one.\n"
                      "POOL = _descriptor_pool.DescriptorPool()\n"
                      "DESCRIPTOR = POOL.AddSerializedFile(", text, flags=re.M)
    if n != 1:
        raise SystemExit(f"{pb2}: the descriptor-pool line was not found (protoc output changed?)")
    pb2.write_text(HEADER + text)
    stub = OUT / "kserve_v2_pb2_grpc.py"
    text = stub.read_text()
    text, n = re.subn(r"^import kserve_v2_pb2 as ", "from . import kserve_v2_pb2 as ", text, flags=re.M)
    if n != 1:
        raise SystemExit(f"{stub}: the message-module import was not found (protoc output changed?)")
    stub.write_text(HEADER + text)
    gencode = re.search(r"Protobuf Python Version: (\S+)", pb2.read_text())
    print(f"wrote {pb2.relative_to(ROOT)} (gencode {gencode.group(1) if gencode else '?'}) and {stub.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
