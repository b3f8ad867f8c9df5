"""Command line tools for model files (tensorpack's ls-checkpoint.py and dump-model-params.py).

    python -m layers.checkpoint ls PATH
    python -m layers.checkpoint convert IN OUT [--meta GRAPH.meta]

The functions live in :mod:`layers.sessinit` and are re-exported here.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from .sessinit import (
    dump_model_params,
    get_checkpoint_path,
    load_checkpoint_vars,
    open_model_file,
    save_checkpoint_vars,
)

__all__ = ["dump_model_params", "get_checkpoint_path", "load_checkpoint_vars", "save_checkpoint_vars",
           "meta_graph_model_variables", "main"]

_PATH_HELP = ("an .npz, or a TF checkpoint: the model-N prefix, its .index/.data-* file, the 'checkpoint' "
              "state file or its directory")


def meta_graph_model_variables(meta_path) -> list:
    """Op names of the TRAINABLE + MODEL variables recorded in a ``.meta`` graph file.

    Reads the MetaGraphDef's collections only (no graph import, nothing executed).
    """
    from tensorflow.core.framework import variable_pb2

    from ._compat import tfv1

    meta = tfv1.MetaGraphDef()
    try:
        with open(meta_path, "rb") as f:
            meta.ParseFromString(f.read())
    except FileNotFoundError:
        raise FileNotFoundError(f"No such meta graph file: {meta_path!r}") from None
    except Exception as e:  # noqa: BLE001 - protobuf raises its own DecodeError
        raise ValueError(f"{meta_path}: not a binary MetaGraphDef (.meta) file: {e}") from None
    names = []
    for key in (tfv1.GraphKeys.TRAINABLE_VARIABLES, tfv1.GraphKeys.MODEL_VARIABLES):
        if key not in meta.collection_def:
            continue
        for raw in meta.collection_def[key].bytes_list.value:
            vd = variable_pb2.VariableDef()
            vd.ParseFromString(raw)
            name = vd.variable_name.rsplit(":", 1)[0]
            if name not in names:
                names.append(name)
    return names


def _ls(args) -> int:
    f = open_model_file(args.path)
    described = f.describe()
    rows = sorted(described.items())
    width = max([len(n) for n, _ in rows] + [4])
    total = 0
    print(f"{'name':<{width}}  {'shape':<20}  dtype")
    for name, (shape, dtype) in rows:
        n = int(np.prod(shape))
        total += n
        print(f"{name:<{width}}  {str(list(shape)):<20}  {dtype.name}")
    print(f"{len(rows)} variables, {total:,} parameters ({f.path})")
    return 0


def _convert(args) -> int:
    values = load_checkpoint_vars(args.input)
    if args.meta:
        keep = meta_graph_model_variables(args.meta)
        absent = [n for n in keep if n not in values]
        if absent:
            raise ValueError(f"{args.input} lacks {len(absent)} model variable(s) of {args.meta}: {absent}")
        dropped = len(values) - len(keep)
        values = {n: values[n] for n in keep}
        print(f"kept the {len(keep)} trainable/model variables of {args.meta}; dropped {dropped} others")
    if args.output.endswith(".npz"):
        values = {n + ":0": v for n, v in values.items()}
    save_checkpoint_vars(values, args.output)
    print(f"wrote {len(values)} variables to {args.output}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m layers.checkpoint",
                                description="Inspect and convert model files (.npz <-> TF checkpoint).")
    sub = p.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("ls", help="list variables (name, shape, dtype) and the total parameter count",
                        description="List the variables of a model file, sorted by name, and the total "
                                    "number of parameters.")
    ls.add_argument("path", help=_PATH_HELP)
    ls.set_defaults(func=_ls)
    cv = sub.add_parser("convert", help="convert between .npz and TF checkpoint",
                        description="Convert a model file. OUT ending in .npz is written with "
                                    "np.savez_compressed (keys 'name:0', as tensorpack's model zoo); anything "
                                    "else becomes a TF checkpoint prefix (keys are op names).")
    cv.add_argument("input", help=_PATH_HELP)
    cv.add_argument("output", help="output .npz file or checkpoint prefix (e.g. out/model-0)")
    cv.add_argument("--meta", metavar="GRAPH.meta",
                    help="keep only the trainable + model variables (weights, BatchNorm statistics) of this "
                         "meta graph, dropping optimizer slots, global_step etc.; each must be in the input. "
                         "Default: copy every variable")
    cv.set_defaults(func=_convert)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
