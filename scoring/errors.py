"""Errors raised by the scoring core.

Everything derives from ``ScoringError`` (a ``ValueError``) so the streaming layer can catch
one class and dead-letter the offending record instead of crashing the agent.
"""

from __future__ import annotations


class ScoringError(ValueError):
    """Base class: the input (event, profile, rules...) is unacceptable, not a bug in the core."""


class InvalidEvent(ScoringError):
    """An input record is rejected; ``field`` names the offending field so it can be reported."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"field {field!r}: {reason}")

    def __reduce__(self):  # keep picklable (multiprocessing, dead-letter serialisation)
        return (type(self), (self.field, self.reason))


class RulesError(ScoringError):
    """The rules file is invalid; ``key_path`` is the dotted path of the offending key."""

    def __init__(self, key_path: str, reason: str, source: str = "") -> None:
        self.key_path = key_path
        self.reason = reason
        self.source = source
        msg = f"{key_path}: {reason}"
        super().__init__(f"{msg} (in {source})" if source else msg)

    def __reduce__(self):
        return (type(self), (self.key_path, self.reason, self.source))


class IllegalTransition(ScoringError):
    """A lifecycle move that the transition table forbids (e.g. 'won' on a mere lead)."""

    def __init__(self, from_stage: str, to_stage: str, trigger: str = "") -> None:
        self.from_stage = from_stage
        self.to_stage = to_stage
        self.trigger = trigger
        how = f" by {trigger!r}" if trigger else ""
        super().__init__(f"illegal transition {from_stage} -> {to_stage}{how}")

    def __reduce__(self):
        return (type(self), (self.from_stage, self.to_stage, self.trigger))
