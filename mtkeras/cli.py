"""``mtkeras train CONFIG`` / ``mtkeras evaluate RUN DATA`` / ``mtkeras predict RUN [FILE]``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterator, Sequence

from mtkeras.defaults import QUANTIZE


def _train(args: argparse.Namespace) -> int:
    from mtkeras.config import load_config
    from mtkeras.workflow import train

    config = load_config(args.config, overrides=args.set or [])
    run_dir = train(config, verbose=args.verbose)
    print(json.dumps({"run": run_dir}))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from mtkeras.data import read_records
    from mtkeras.evaluation import evaluate, summary
    from mtkeras.predict import Predictor

    predictor = Predictor.from_folder(args.run, batch_size=args.batch_size)
    records = read_records(args.data, predictor.spec, label_delimiter=args.label_delimiter,
                           drop_empty_texts=args.drop_empty_texts)
    report = evaluate(predictor, records, output_dir=args.output)
    print(json.dumps(summary(report), indent=2))
    return 0


def _predict(args: argparse.Namespace) -> int:
    from mtkeras.predict import Predictor

    predictor = Predictor.from_folder(args.run, batch_size=args.batch_size)
    handle = sys.stdin if args.input in (None, "-") else open(args.input, encoding="utf-8")  # noqa: SIM115

    def texts() -> Iterator[str]:  # read lazily: answers stream out while later lines are read
        for number, line in enumerate(handle, start=1):
            line = line.rstrip("\r\n")
            if not args.jsonl:
                yield line
                continue
            if not line.strip():
                continue
            try:
                yield json.loads(line)[predictor.spec.text_column]
            except (json.JSONDecodeError, KeyError, TypeError) as error:
                raise SystemExit(
                    f"mtkeras predict: {args.input or 'stdin'}, line {number}: expected a JSON object with a "
                    f"{predictor.spec.text_column!r} field ({error!r})."
                ) from None

    try:
        for prediction in predictor.predict_iter(texts()):
            print(json.dumps(prediction, ensure_ascii=False))
    finally:
        if handle is not sys.stdin:
            handle.close()
    return 0


def _export(args: argparse.Namespace) -> int:
    import os

    from mtkeras.export import export_saved_model, export_tflite
    from mtkeras.export.saved_model import check_export_name

    name = check_export_name(args.name)
    written = {"saved_model": export_saved_model(args.run, os.path.join(args.output_dir, name), version=args.version,
                                                 overwrite=args.overwrite, jit_compile=args.jit_compile)}
    if args.tflite:
        suffix = f"-{args.quantize}" if args.quantize else ""
        path = os.path.join(args.output_dir, f"{name}-v{args.version}{suffix}.tflite")
        written["tflite"] = export_tflite(args.run, path, quantize=args.quantize, overwrite=args.overwrite)
    print(json.dumps(written, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mtkeras", description="One BERT model, several label groups.")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train from a YAML/JSON config into its output folder")
    train.add_argument("config", help="config file (.yaml, .yml or .json)")
    train.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="override a config value, e.g. --set training.epochs=1 (repeatable)")
    train.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1, help="Keras fit verbosity")
    train.set_defaults(handler=_train)

    evaluate = commands.add_parser("evaluate", help="evaluate a run (or model folder) on labelled data")
    evaluate.add_argument("run", help="run folder (or its model/ folder)")
    evaluate.add_argument("data", help="labelled data: .jsonl or .csv")
    evaluate.add_argument("--output", help="also write metrics.json and roc_curves.png here")
    evaluate.add_argument("--batch-size", type=int, default=32)
    evaluate.add_argument("--label-delimiter", default="|")
    evaluate.add_argument("--drop-empty-texts", action="store_true")
    evaluate.set_defaults(handler=_evaluate)

    predict = commands.add_parser("predict", help="predict texts (one per line) from a file or stdin; JSON lines out")
    predict.add_argument("run", help="run folder (or its model/ folder)")
    predict.add_argument("input", nargs="?", help="text file, one text per line; '-' or nothing for stdin")
    predict.add_argument("--jsonl", action="store_true", help="input lines are JSON objects with the text field")
    predict.add_argument("--batch-size", type=int, default=32)
    predict.set_defaults(handler=_predict)
    export = commands.add_parser("export", help="export a run as a TF Serving SavedModel (and TFLite)")
    export.add_argument("run", help="run folder (or its model/ folder)")
    export.add_argument("--name", required=True, help="model name: the folder under --output-dir")
    export.add_argument("--version", type=int, default=1, help="TF Serving version folder (a positive integer)")
    export.add_argument("--output-dir", default="saved_models", help="where <name>/<version>/ goes")
    export.add_argument("--overwrite", action="store_true", help="replace an existing version")
    export.add_argument("--tflite", action="store_true", help="also write <name>-v<version>.tflite")
    export.add_argument("--quantize", choices=[q for q in QUANTIZE if q], help="TFLite weight quantization")
    export.add_argument("--jit-compile", action="store_true",
                        help="mark the SavedModel's model graph for XLA (texts padded to multiples of 16 tokens)")
    export.set_defaults(handler=_export)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="mtkeras: %(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except (ValueError, TypeError, KeyError, ImportError, FileNotFoundError, FileExistsError, IsADirectoryError,
            NotADirectoryError) as error:  # the user's input: exit 2
        print(f"mtkeras {args.command}: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except OSError as error:  # the machine's: a full or read-only disk, permissions (exit 1)
        print(f"mtkeras {args.command}: error: {_one_line(error)}", file=sys.stderr)
        return 1


def _one_line(error: BaseException) -> str:
    message = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
    return " ".join(message.split()) or type(error).__name__


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
