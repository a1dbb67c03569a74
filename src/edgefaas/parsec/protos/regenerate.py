"""Rebuild ``parsec_pb2.py`` from ``parsec.proto``.

The generated module is committed so that the runtime needs only ``protobuf``,
not a protobuf compiler. Rerun this after editing ``parsec.proto``::

    pip install "grpcio-tools==1.71.2"      # bundles protoc for protobuf 5.29
    python -m edgefaas.parsec.protos.regenerate

Why that grpcio-tools version: generated code carries a runtime check that the
installed ``protobuf`` is not older than the gencode. grpcio-tools 1.71.x emits
gencode 5.29.0, which matches the project's ``protobuf>=5.29`` floor; a newer
grpcio-tools would silently raise that floor to 6.x or later.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# protoc runs from the source root so the descriptor is registered under the unique
# name "edgefaas/parsec/protos/parsec.proto", not a bare "parsec.proto" that another
# library in the same process could also claim.
SRC_ROOT = HERE.parents[2]
PROTO_FILES = ("parsec.proto",)


def regenerate(out_root: Path = SRC_ROOT) -> None:
    """Run protoc (from grpcio-tools) on the bundled .proto files.

    ``out_root`` is the source root; the module lands next to its .proto file.
    """
    try:
        from grpc_tools import protoc  # only needed at development time
    except ImportError as exc:  # pragma: no cover - depends on the dev environment
        raise SystemExit("grpcio-tools is not installed: pip install 'grpcio-tools==1.71.2'") from exc

    for name in PROTO_FILES:
        args = ["protoc", f"-I{SRC_ROOT}", f"--python_out={out_root}", str(HERE / name)]
        if protoc.main(args) != 0:
            raise SystemExit(f"protoc failed on {name}")


if __name__ == "__main__":
    regenerate(Path(sys.argv[1]) if len(sys.argv) > 1 else SRC_ROOT)
