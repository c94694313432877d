"""A film whose header breaks the value representations: dates with dashes, a time with
colons, a birth date with trailing garbage, an age without its unit, a lower-case code."""

from __future__ import annotations

import re

from pydicom.dataset import Dataset

from .conftest import renamed

#: Keyword -> a non-conformant value, as some modalities and converters write them.
BAD_VALUES = {
    "StudyDate": "2024-01-02",
    "StudyTime": "12:30:00",
    "PatientBirthDate": "19991231-PRIVATE",
    "PatientAge": "62",
    "PatientIdentityRemoved": "Yes",
    "AcquisitionDate": "20241399",
}


def bad_values_in(text: str) -> list[str]:
    """The :data:`BAD_VALUES` that ``text`` shows as values of their own: "62" in "aged 62"
    counts, "62" inside the probability "0.624" does not."""
    return [value for value in BAD_VALUES.values()
            if re.search(rf"(?<!\w)(?<!\d\.){re.escape(value)}(?!\w)(?!\.\d)", text)]


def with_bad_values(source: Dataset) -> Dataset:
    """A copy of ``source`` (a new instance) carrying :data:`BAD_VALUES`, set raw so that
    pydicom does not refuse them on the way in."""
    film = renamed(source)
    for keyword in BAD_VALUES:
        if keyword in film:
            del film[keyword]
    with _Lenient():
        for keyword, value in BAD_VALUES.items():
            setattr(film, keyword, value)
    return film


class _Lenient:
    """pydicom's writing validation off for the duration (it would refuse the values)."""

    def __enter__(self) -> None:
        from pydicom import config

        self.mode = config.settings.writing_validation_mode
        config.settings.writing_validation_mode = config.IGNORE

    def __exit__(self, *exc: object) -> None:
        from pydicom import config

        config.settings.writing_validation_mode = self.mode
