"""``mtkeras train CONFIG`` / ``prepare CONFIG --out DIR`` / ``evaluate RUN DATA`` / ``predict RUN [FILE]`` /
``export RUN`` / ``inspect EXPORT``."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Iterator, Sequence

from mtkeras.defaults import EXPORT_PRECISION, ONNX_QUANTIZE, PRECISIONS, PREDICT_PRECISION, QUANTIZE


def _train(args: argparse.Namespace) -> int:
    from mtkeras.config import load_config
    from mtkeras.workflow import train

    config = load_config(args.config, overrides=args.set or [])
    run_dir = train(config, verbose=args.verbose)
    print(json.dumps({"run": run_dir}))
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from mtkeras.config import load_config
    from mtkeras.workflow import prepare

    if args.rows_per_shard is not None and args.rows_per_shard < 1:
        raise ValueError(f"--rows-per-shard must be an integer >= 1, received {args.rows_per_shard}.")
    _check_folder(args.out, "--out")
    config = load_config(args.config, overrides=args.set or [])
    manifest = prepare(config, args.out, rows_per_shard=args.rows_per_shard, skip_bad_rows=args.skip_bad_rows,
                       progress=sys.stderr.isatty())
    print(json.dumps({"shards": os.path.abspath(args.out), "rows": manifest["rows"], "files": len(manifest["shards"]),
                      "bad_rows": manifest["bad_rows"]}))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from mtkeras.data import read_records
    from mtkeras.evaluation import evaluate, summary
    from mtkeras.predict import Predictor

    _check_file(args.data, "data")
    if args.output is not None:
        _check_folder(args.output, "--output")
    predictor = Predictor.from_folder(args.run, batch_size=args.batch_size, precision=args.precision)
    records = read_records(args.data, predictor.spec, label_delimiter=args.label_delimiter,
                           drop_empty_texts=args.drop_empty_texts)
    report = evaluate(predictor, records, output_dir=args.output)
    print(json.dumps(summary(report), indent=2))
    return 0


def _predict(args: argparse.Namespace) -> int:
    from mtkeras.predict import Predictor

    stdin = args.input in (None, "-")
    if not stdin:
        _check_file(args.input, "input")
    predictor = Predictor.from_folder(args.run, batch_size=args.batch_size, precision=args.precision)
    # Bytes, decoded line by line, so that a line that is not UTF-8 is named (a text stdin without a buffer,
    # e.g. one replaced in tests, gives str lines).
    handle = getattr(sys.stdin, "buffer", sys.stdin) if stdin else open(args.input, "rb")  # noqa: SIM115
    name, column = "stdin" if stdin else args.input, predictor.spec.text_column

    def texts() -> Iterator[str]:  # read lazily: answers stream out while later lines are read
        for number, raw in enumerate(handle, start=1):
            try:
                line = (raw.decode("utf-8") if isinstance(raw, bytes) else raw).rstrip("\r\n")
            except UnicodeDecodeError as error:
                raise ValueError(f"{name}, line {number}: not valid UTF-8 (byte {raw[error.start:error.start + 1]!r}"
                                 f" at column {error.start + 1}); save the input as UTF-8.") from None
            if not args.jsonl:
                yield line
                continue
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{name}, line {number}: not valid JSON ({error}).") from None
            if not isinstance(record, dict) or not isinstance(record.get(column), str):
                raise ValueError(f"{name}, line {number}: expected a JSON object with a string {column!r} field, "
                                 f"received {record!r:.80}.")
            yield record[column]

    try:
        for prediction in predictor.predict_iter(texts()):
            print(json.dumps(prediction, ensure_ascii=False))
    finally:
        if not stdin:
            handle.close()
    return 0


def _export(args: argparse.Namespace) -> int:
    from mtkeras.export import export_onnx, export_saved_model, export_tflite
    from mtkeras.export.saved_model import check_export_name

    name = check_export_name(args.name)
    if args.quantize and not (args.tflite or args.onnx):
        raise ValueError(f"--quantize {args.quantize} applies to the TFLite and ONNX files; add --tflite or --onnx, "
                         "or drop --quantize for the SavedModel alone.")
    if args.onnx and args.quantize not in ONNX_QUANTIZE:
        raise ValueError(f"--quantize {args.quantize} applies to the TFLite file only; the ONNX file (--onnx) takes "
                         f"--quantize {' or '.join(q for q in ONNX_QUANTIZE if q)}, or none (float32).")
    _check_folder(args.output_dir, "--output-dir")
    suffix = f"-{args.quantize}" if args.quantize else ""
    files = {"tflite": os.path.join(args.output_dir, f"{name}-v{args.version}{suffix}.tflite") if args.tflite else None,
             "onnx": os.path.join(args.output_dir, f"{name}-v{args.version}{suffix}.onnx") if args.onnx else None}
    for path in files.values():  # refused before the SavedModel is written, not after
        if path is not None and os.path.exists(path) and not args.overwrite:
            raise FileExistsError(f"{path!r} already exists; pass --overwrite to replace it.")
    written = {"saved_model": export_saved_model(args.run, os.path.join(args.output_dir, name), version=args.version,
                                                 overwrite=args.overwrite, jit_compile=args.jit_compile,
                                                 warmup=not args.no_warmup, precision=args.precision)}
    if files["tflite"]:
        written["tflite"] = export_tflite(args.run, files["tflite"], quantize=args.quantize, overwrite=args.overwrite)
    if files["onnx"]:
        written["onnx"] = export_onnx(args.run, files["onnx"], quantize=args.quantize, overwrite=args.overwrite)
    print(json.dumps(written, indent=2))
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from mtkeras.export.inspect import inspect_export

    texts = [] if args.no_run else (args.text or None)
    print(json.dumps(inspect_export(args.export, texts, signature=args.signature), indent=2, ensure_ascii=False))
    return 0


def _check_file(path: str, what: str) -> None:
    """A file to read: exists and is a file (not a folder)."""
    if os.path.isdir(path):
        raise IsADirectoryError(f"{what} {path!r} is a folder; expected a file.")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{what} {path!r} does not exist.")


def _check_folder(path: str, what: str) -> None:
    """A folder to write into: a folder, or not there yet (then created) - never a file."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise NotADirectoryError(f"{what} {path!r} is a file, not a folder.")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mtkeras", description="One BERT model, several label groups.")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of any error")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train from a YAML/JSON config into its output folder")
    train.add_argument("config", help="config file (.yaml, .yml or .json)")
    train.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="override a config value, e.g. --set training.epochs=1 (repeatable)")
    train.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1, help="Keras fit verbosity")
    train.set_defaults(handler=_train)

    prepare = commands.add_parser("prepare", help="tokenize a config's data.train once into TFRecord shards")
    prepare.add_argument("config", help="config file (.yaml, .yml or .json); its data.train is read")
    prepare.add_argument("--out", required=True, help="shards folder (then train with data.train: this folder)")
    prepare.add_argument("--rows-per-shard", type=int, help="rows per TFRecord file (default 10000)")
    prepare.add_argument("--skip-bad-rows", action="store_true",
                         help="leave out rows with bad labels or texts (logged, counted and listed in manifest.json)")
    prepare.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value (repeatable)")
    prepare.set_defaults(handler=_prepare)

    evaluate = commands.add_parser("evaluate", help="evaluate a run (or model folder) on labelled data")
    evaluate.add_argument("run", help="run folder (or its model/ folder)")
    evaluate.add_argument("data", help="labelled data: .jsonl or .csv")
    evaluate.add_argument("--output", help="also write metrics.json and roc_curves.png here")
    evaluate.add_argument("--batch-size", type=int, default=32)
    evaluate.add_argument("--label-delimiter", default="|")
    evaluate.add_argument("--drop-empty-texts", action="store_true")
    evaluate.add_argument("--precision", choices=[*PRECISIONS, "auto"], default=PREDICT_PRECISION,
                          help=f"what the encoder computes in (default {PREDICT_PRECISION}; auto: bfloat16 on a CPU "
                               "with bfloat16 units, else float32)")
    evaluate.set_defaults(handler=_evaluate)

    predict = commands.add_parser("predict", help="predict texts (one per line) from a file or stdin; JSON lines out")
    predict.add_argument("run", help="run folder (or its model/ folder)")
    predict.add_argument("input", nargs="?", help="text file, one text per line; '-' or nothing for stdin")
    predict.add_argument("--jsonl", action="store_true", help="input lines are JSON objects with the text field")
    predict.add_argument("--batch-size", type=int, default=32)
    predict.add_argument("--precision", choices=[*PRECISIONS, "auto"], default=PREDICT_PRECISION,
                         help=f"what the encoder computes in (default {PREDICT_PRECISION}; auto: bfloat16 on a CPU "
                              "with bfloat16 units, else float32)")
    predict.set_defaults(handler=_predict)
    export = commands.add_parser("export", help="export a run as a TF Serving SavedModel (and TFLite)")
    export.add_argument("run", help="run folder (or its model/ folder)")
    export.add_argument("--name", required=True, help="model name: the folder under --output-dir")
    export.add_argument("--version", type=int, default=1, help="TF Serving version folder (a positive integer)")
    export.add_argument("--output-dir", default="saved_models", help="where <name>/<version>/ goes")
    export.add_argument("--overwrite", action="store_true", help="replace an existing version")
    export.add_argument("--tflite", action="store_true", help="also write <name>-v<version>.tflite")
    export.add_argument("--onnx", action="store_true", help="also write <name>-v<version>.onnx (needs mtkeras[onnx])")
    export.add_argument("--quantize", choices=[q for q in QUANTIZE if q],
                        help="weight quantization of the TFLite file (float16, dynamic) and the ONNX file (dynamic: "
                             "int8 MatMuls for ONNX Runtime)")
    export.add_argument("--no-warmup", action="store_true",
                        help="no assets.extra/tf_serving_warmup_requests (TF Serving's warm-up requests on load)")
    export.add_argument("--precision", choices=list(PRECISIONS), default=EXPORT_PRECISION,
                        help="what the SavedModel's encoder computes in: bfloat16 for CPUs with bfloat16 units, "
                             f"float16 for GPUs (default {EXPORT_PRECISION}; TFLite and ONNX stay float32)")
    export.add_argument("--jit-compile", action="store_true",
                        help="mark the SavedModel's model graph for XLA (texts padded to multiples of 16 tokens)")
    export.set_defaults(handler=_export)

    inspect = commands.add_parser("inspect", help="an export's signatures, labels and thresholds, and a sample answer")
    inspect.add_argument("export", help="SavedModel version folder (<name>/<version>/)")
    inspect.add_argument("--text", action="append", help="text to answer (repeatable; default: a sample text)")
    inspect.add_argument("--signature", default="serving_default", help="the text signature to run")
    inspect.add_argument("--no-run", action="store_true", help="describe the export only, answer nothing")
    inspect.set_defaults(handler=_inspect)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="mtkeras: %(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except USER_ERRORS as error:  # the user's input, or the machine's (a full or read-only disk): exit 2
        if args.debug:
            raise
        print(f"mtkeras {args.command}: error: {_one_line(error)}", file=sys.stderr)
        return 2


#: Errors a user can cause and fix (bad config, path, data or model folder, a diverging learning rate, a full
#: or read-only disk, permissions): one line, exit 2. Any other exception is a bug and keeps its traceback.
USER_ERRORS = (ValueError, TypeError, KeyError, ImportError, OSError, FloatingPointError)


def _one_line(error: BaseException) -> str:
    message = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
    return " ".join(message.split()) or type(error).__name__


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
