"""Turn a pydantic-settings class into argparse flags, so every CLI flag is also a LOGLLM_ env var.

Flags default to "not given"; the settings class then layers flag > env var > default and validates the result,
so one class stays the single source of names, defaults, types and help text.
"""

from __future__ import annotations

import argparse
import typing
from typing import Any, TypeVar

from pydantic import ValidationError
from pydantic_settings import BaseSettings

S = TypeVar("S", bound=BaseSettings)


def _is_bool(annotation: Any) -> bool:
    return annotation is bool


def _is_list(annotation: Any) -> bool:
    return typing.get_origin(annotation) is list


def add_settings_arguments(
    parser: argparse.ArgumentParser, settings_cls: type[BaseSettings], *, skip: frozenset[str] = frozenset()
) -> None:
    """One ``--flag-name`` per field; help shows the env var and the default."""
    prefix = str(settings_cls.model_config.get("env_prefix", ""))
    for name, field in settings_cls.model_fields.items():
        if name in skip:
            continue
        default = field.default_factory() if field.default_factory else field.default  # type: ignore[call-arg]
        help_text = f"{field.description or ''} [env {prefix}{name.upper()}; default {default}]".strip()
        kwargs: dict[str, Any] = {"dest": name, "default": argparse.SUPPRESS, "help": help_text}
        if _is_bool(field.annotation):
            kwargs["action"] = argparse.BooleanOptionalAction
        elif _is_list(field.annotation):
            kwargs["nargs"] = "+"
        parser.add_argument(f"--{name.replace('_', '-')}", **kwargs)


def settings_from_args(settings_cls: type[S], args: argparse.Namespace) -> S:
    """Flags given on the command line override env vars; a bad value exits with the field named."""
    given = {k: v for k, v in vars(args).items() if k in settings_cls.model_fields}
    try:
        return settings_cls(**given)
    except ValidationError as exc:
        problems = "; ".join(_problem(err) for err in exc.errors())
        raise SystemExit(f"logllm: invalid settings: {problems}") from None


def _problem(err: Any) -> str:
    """One validation error as the flag and what is wrong; a whole-settings check names its fields itself."""
    if not err["loc"]:
        return str(err["msg"]).removeprefix("Value error, ")
    flag = "--" + ".".join(str(p) for p in err["loc"]).replace("_", "-")
    return f"{flag}: {err['msg']} (got {str(err.get('input'))[:60]!r})"
