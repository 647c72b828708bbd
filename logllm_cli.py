"""The ``logllm`` console script: one subcommand per job, each defined next to the code it runs."""

from __future__ import annotations

import argparse
import logging
import os
import sys


def build_parser() -> argparse.ArgumentParser:
    from model.score_cli import add_score_parser
    from service.cli import add_serve_parser
    from service.records.export_cli import add_feedback_parser
    from service.replay import add_replay_parser
    from training.cli import add_training_parsers

    parser = argparse.ArgumentParser(
        prog="logllm",
        description="LogLLM log anomaly detection: train, evaluate, score and serve. "
        "Every --flag is also an environment variable LOGLLM_<FLAG>.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_training_parsers(subparsers)
    add_score_parser(subparsers)
    add_serve_parser(subparsers)
    add_replay_parser(subparsers)
    add_feedback_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    sys.exit(args.handler(args))


if __name__ == "__main__":
    main()
