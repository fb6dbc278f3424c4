"""Shared CLI plumbing: one-line failures, and the one translation of library errors.

Every command's failures pass :func:`errors` (or :func:`run`, which adds an event
loop): library exceptions become a :class:`CliError` with the documented exit code
(1 the operation failed, 2 bad usage or input), printed as one line by ``main``.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Coroutine, Iterator
from typing import Any, NoReturn, TypeVar

import pydantic

__all__ = ["CliError", "errors", "fail", "require_port", "run"]

T = TypeVar("T")


class CliError(Exception):
    """A failure the CLI reports as one line; ``exit_code`` 1 = failed, 2 = bad input."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def fail(message: str, *, code: int = 1) -> NoReturn:
    first = message.strip().splitlines()[0] if message.strip() else "error"
    print(f"crb: error: {first}", file=sys.stderr)
    sys.exit(code)


@contextlib.contextmanager
def errors() -> Iterator[None]:
    """Translate library failures into one-line CLI errors (no traceback)."""
    import keys
    from adapters import AdapterError, InputError
    from adapters.kafka import AccessDenied, CredentialError, TopicMissing, TransportError
    from schemas import first_error

    try:
        yield
    except CliError:
        raise
    except keys.EnvelopeError as exc:
        raise CliError(f"envelope refused ({exc.reason.value})") from exc
    except keys.KeysError as exc:
        raise CliError(str(exc)) from exc
    except InputError as exc:
        raise CliError(str(exc), exit_code=2) from exc
    except AdapterError as exc:
        raise CliError(str(exc)) from exc
    except TopicMissing as exc:
        raise CliError(str(exc)) from exc
    except AccessDenied as exc:
        raise CliError(f"Kafka refused access: {exc}") from exc
    except CredentialError as exc:
        raise CliError(str(exc)) from exc
    except TransportError as exc:
        hint = " — is Kafka running? (crb kafka status)" if exc.retriable else ""
        raise CliError(f"Kafka: {exc}{hint}") from exc
    except pydantic.ValidationError as exc:
        raise CliError(f"invalid input: {first_error(exc)}", exit_code=2) from exc
    except OSError as exc:
        raise CliError(f"{exc.filename or 'I/O'}: {exc.strerror}", exit_code=2) from exc
    except ValueError as exc:
        raise CliError(str(exc) or type(exc).__name__, exit_code=2) from exc


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (the OS's choice)."""
    import socket

    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
    return port


def require_port(host: str, port: int, what: str) -> None:
    """Fail with one line (exit 1) if ``host:port`` cannot be bound — before a
    service starts, instead of a traceback from inside its server."""
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise CliError(
                f"{what}: cannot listen on {host}:{port} ({exc.strerror}): is another "
                "instance running? Stop it or choose another port"
            ) from exc


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion, its failures translated by :func:`errors`."""
    with errors():
        return asyncio.run(coro)
