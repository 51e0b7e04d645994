"""leadpulse scoring core: pure, deterministic lead scoring (fit + decaying engagement),
temperature with hysteresis and the lead -> MQL -> SQL -> customer lifecycle.

No Kafka, no Faust, no I/O except reading a rules file; the streaming agents call
``ScoringModel``.  Its hot modules run compiled when ``make venv`` built them (``scoring._compiled``).
"""

from . import _compiled

_compiled.install()

from .errors import IllegalTransition, InvalidEvent, RulesError, ScoringError
from .events import (
    ACTIONS,
    EVENT_TYPES,
    BehaviourEvent,
    ContactProfile,
    QualificationUpdate,
    validate_event,
    validate_profile,
    validate_qualification,
)
from .fit import Fit, score_fit
from .lifecycle import STAGES, TEMPERATURES, TRANSITIONS
from .model import ScoringModel
from .outputs import LifecycleChange, ScoreSnapshot
from .rules import Rules, default_rules, load_rules, parse_rules
from .state import ContactState

#: "compiled" (Cython, built by ``make venv``) or "pure" (the Python source; ``LEADPULSE_PURE_PYTHON=1``).
BUILD = _compiled.build()

__all__ = [
    "ACTIONS", "EVENT_TYPES", "STAGES", "TEMPERATURES", "TRANSITIONS",
    "BehaviourEvent", "ContactProfile", "QualificationUpdate",
    "validate_event", "validate_profile", "validate_qualification",
    "ScoringError", "InvalidEvent", "RulesError", "IllegalTransition",
    "Rules", "load_rules", "parse_rules", "default_rules",
    "Fit", "score_fit",
    "ScoringModel", "ContactState", "LifecycleChange", "ScoreSnapshot", "BUILD",
]
