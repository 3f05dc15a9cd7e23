"""The two kinds of student behind one door: ``IntentRefiner`` (a causal LM that writes Q* by beam
search) and ``WordTagger`` (an encoder that chooses Q*'s title words). ``new_student`` makes the kind
``IntentSettings.student`` names; ``load_refiner`` reads either kind back from its directory."""

from __future__ import annotations

from pathlib import Path

from intent.model import CONFIG_NAME, IntentRefiner
from intent.tagger import TAGGER_CONFIG, WordTagger
from topicfeed.settings import IntentSettings

Student = IntentRefiner | WordTagger


def new_student(params: IntentSettings) -> Student:
    """An untrained student of the kind ``params.student`` names, from its base (``tagger_base`` or
    ``base_model``)."""
    return WordTagger.from_base(params=params) if params.student == "tagger" else IntentRefiner.from_base(params=params)


def student_name(params: IntentSettings) -> str:
    """The student ``params.student`` names, for progress lines: "<tagger_base> word tagger" or the
    causal student's ``base_model``."""
    return f"{params.tagger_base} word tagger" if params.student == "tagger" else params.base_model


def load_refiner(directory: str | Path, **overrides: object) -> Student:
    """The student saved in ``directory``, of whichever kind it is (its config file tells)."""
    directory = Path(directory)
    if (directory / TAGGER_CONFIG).is_file():
        return WordTagger.from_pretrained(directory, **overrides)
    if not (directory / CONFIG_NAME).is_file():
        raise FileNotFoundError(f"{directory} is not a saved intent refiner: neither {CONFIG_NAME} nor {TAGGER_CONFIG} is there")
    return IntentRefiner.from_pretrained(directory, **overrides)


def is_saved_refiner(directory: str | Path) -> bool:
    """Whether ``directory`` holds a saved student of either kind."""
    return (Path(directory) / TAGGER_CONFIG).is_file() or (Path(directory) / CONFIG_NAME).is_file()
