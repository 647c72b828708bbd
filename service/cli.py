"""``logllm serve``: run the service under uvicorn; SIGTERM/SIGINT stop it gracefully.

uvicorn owns the signals: it stops accepting, finishes open requests, then runs the app's shutdown, which lets
the classifier finish and ack its batch in flight. Windows still queued stay in Redis for the next start.
"""

from __future__ import annotations

import argparse
import gc
import logging
import sys

from model.cli_args import add_settings_arguments, settings_from_args
from model.hub import checkpoint_backbones, stay_offline
from service.settings import ServiceSettings

GRACEFUL_SHUTDOWN_S = 30
SWITCH_INTERVAL_S = 0.001
log = logging.getLogger(__name__)


def add_serve_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "serve",
        help="serve the HTTP API: ingest lines, window them in Redis, classify closed windows",
        description="--role api runs intake and queries without the model, --role worker the classifier (health"
        " and metrics on --worker-port); run any number of each on one Redis. Every flag is also an environment"
        " variable LOGLLM_<FLAG>; prefer LOGLLM_AUTH_TOKEN over "
        "--auth-token, which other users can see in the process list. Without a token it listens on loopback"
        " only, unless --insecure-no-auth.",
    )
    add_settings_arguments(parser, ServiceSettings)
    parser.set_defaults(handler=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    """Serve until a signal; 1 when the app could not start (bad checkpoint, Redis unreachable...), 130 on Ctrl-C."""
    settings = settings_from_args(ServiceSettings, args)
    stay_offline(checkpoint_backbones(settings.checkpoint))  # before anything imports huggingface_hub
    from service.windows.reading import ReadingError, reading_summary, with_checkpoint_reading

    try:  # the checkpoint's log format and windowing, for what no flag or env var gives
        flags = {k: v for k, v in vars(args).items() if k in ServiceSettings.model_fields}
        settings = with_checkpoint_reading(settings, flags)
    except ReadingError as exc:
        raise SystemExit(f"logllm serve: {exc}") from None
    for line in reading_summary(settings):
        log.info("reading logs: %s", line)
    from service.request_guard import serve_settings

    served, level, message = serve_settings(settings)  # no token: loopback only, unless --insecure-no-auth
    logging.getLogger("logllm.serve").log(level, message)
    if served is None:
        return 2
    settings = served
    import uvicorn

    from service.app import create_app

    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.worker_port if settings.role == "worker" else settings.port,
        lifespan="on",
        log_config=None,  # keep the logging set up by the CLI
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )
    server = uvicorn.Server(config)
    # Everything imported and built so far lives as long as the process: moved out of the collector's sight,
    # a full collection (which holds the GIL, so it stalls the event loop) only walks what requests allocate.
    gc.freeze()
    # Big bodies are parsed in worker threads; the event loop waits for the GIL at most this long (default 5 ms)
    # each time it needs it, and answering one request needs it several times.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    try:
        server.run()
    except KeyboardInterrupt:
        # uvicorn re-raises Ctrl-C after its graceful shutdown; the shutdown is done, so exit like a shell does
        return 130
    return 0 if server.started else 1


def main(argv: list[str] | None = None) -> None:
    """``python -m service.cli serve ...``: the same command without the full ``logllm`` CLI."""
    parser = argparse.ArgumentParser(prog="logllm")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    add_serve_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    sys.exit(args.handler(args))


if __name__ == "__main__":
    main()
