"""Plans: generators that yield requests and return a result, so that one piece of logic can
be run by whoever answers the requests (a sync client, an async one, or plain method calls)."""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any, TypeVar

R = TypeVar("R")
T = TypeVar("T")


def drive(plan: Generator[R, Any, T], answer: Callable[[R], Any]) -> T:
    """Run ``plan`` to its end, sending back ``answer(request)`` for each request it yields."""
    reply = None
    while True:
        try:
            request = plan.send(reply)
        except StopIteration as done:
            return done.value
        reply = answer(request)
