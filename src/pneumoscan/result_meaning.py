"""What a result means: whether it applies, what may be shown as a finding, and why.

The one place that decides it. A :class:`~pneumoscan.predictor.Prediction` holds what the
model computed; :func:`interpret` (``prediction.meaning``) turns it into a
:class:`ResultMeaning`, and every face only renders that: ``Prediction.to_dict`` and the
JSON API, the CLI's summary, table, CSV and JSON, the worklist, the ``--cam-dir`` overlay,
the web page (from the API's fields), the DICOM SR and Secondary Capture, and the node's
log line.

- A result **applies** when the image is in scope and carries no population warning
  (:func:`pneumoscan.population.is_applicable`).
- Only a result that applies has a :class:`Finding` (label, probability, cause): a result
  that does not apply shows no label, no cause and no coloured heat map anywhere.
- The model's raw output stays available to programs as :class:`ModelOutput` (the API's
  ``model_output`` object). People see it only where the image is in scope (an adult, an
  age outside 1-5, an unknown population), greyed, as :attr:`ResultMeaning.model_output_note`,
  which says it is not a finding; for an image out of scope it means nothing and is not shown.
- A heat map is shown in colour for a result that applies (:data:`HEATMAP_COLOUR`); for one
  that does not (:data:`HEATMAP_GREY`) it is not shown unless the user asks for it (the
  ``--cam-dir`` option, the API's ``heatmap=true``, the page's heat-map switch), and then
  greyed. The worklist and the DICOM Secondary Capture do not ask: they withhold it.
- :attr:`ResultMeaning.reasons` are the sentences that say why a result does not apply,
  :attr:`ResultMeaning.flags` their short forms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pneumoscan.population import ADULT, PEDIATRIC, UNKNOWN, is_applicable

#: The headline of a result that does not apply, first on every face.
NOT_APPLICABLE = "NOT APPLICABLE"
#: The flag of an image out of scope.
OUT_OF_SCOPE = "out of scope"
#: How a heat map may be shown: in colour (the result applies), or only on request and then
#: greyed (it does not).
HEATMAP_COLOUR = "colour"
HEATMAP_GREY = "grey"
#: Said where a heat map is withheld.
HEATMAP_WITHHELD = "Heat map withheld: the result does not apply."
#: Said under the greyed model output of a result that does not apply.
NOT_A_FINDING = "not a finding for this image"


@dataclass(frozen=True)
class ModelOutput:
    """The model's raw output, for programs. Not a finding unless the result applies."""

    label: str  # a class name from the model card
    probability: float  # calibrated P(pneumonia)
    positive: bool  # probability reached the threshold
    cause: str | None  # bacterial / viral, computed for a positive output only
    cause_probability: float | None  # P(bacterial | pneumonia), likewise

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "probability": round(self.probability, 6),
                "positive": self.positive, "cause": self.cause,
                "cause_probability": None if self.cause_probability is None
                else round(self.cause_probability, 6)}


@dataclass(frozen=True)
class Finding:
    """What may be shown as a finding: only a result that applies has one."""

    label: str
    probability: float
    threshold: float
    positive: bool
    cause: str | None  # only for a positive finding
    cause_probability: float | None


@dataclass(frozen=True)
class Flag:
    """One reason a result does not apply, short: its name and what it rests on."""

    name: str  # "out of scope", "adult", "age outside 1-5", "population unknown"
    detail: str  # the scope reason, or how the population was decided


@dataclass(frozen=True)
class ResultMeaning:
    """What one prediction means, decided once; see the module docstring."""

    applicable: bool
    finding: Finding | None  # None when the result does not apply
    model_output: ModelOutput
    threshold: float
    heatmap: str  # HEATMAP_COLOUR or HEATMAP_GREY
    reasons: tuple[str, ...]  # why the result does not apply, sentences; () when it does
    flags: tuple[Flag, ...]  # the same, short
    show_model_output: bool  # people may see the raw output (greyed, as not a finding)

    @property
    def headline(self) -> str:
        """The finding's label, or NOT APPLICABLE."""
        return self.finding.label if self.finding is not None else NOT_APPLICABLE

    @property
    def not_applicable_headline(self) -> str:
        """``NOT APPLICABLE: out of scope, adult``; "" when the result applies."""
        names = ", ".join(flag.name for flag in self.flags)
        return "" if self.applicable else f"{NOT_APPLICABLE}: {names}"

    @property
    def out_of_scope(self) -> bool:
        return any(flag.name == OUT_OF_SCOPE for flag in self.flags)

    @property
    def population_flagged(self) -> bool:
        """A population warning is among the reasons (not the "unknown" of an image out of
        scope, which was not assessed)."""
        return any(flag.name != OUT_OF_SCOPE for flag in self.flags)

    @property
    def model_output_note(self) -> str:
        """The raw output in words for people, saying it is not a finding; "" when it is
        not to be shown (the result applies, or the image is out of scope)."""
        if not self.show_model_output:
            return ""
        output = self.model_output
        return (f"model output {output.label}, P(pneumonia) {output.probability:.3f} "
                f"(threshold {self.threshold:.3f}): {NOT_A_FINDING}")

    @property
    def heatmap_greyed(self) -> bool:
        return self.heatmap == HEATMAP_GREY

    def summary(self) -> str:
        """One line, for logs: ``PNEUMONIA, P(pneumonia) 0.982`` or ``NOT APPLICABLE: adult;
        model output PNEUMONIA, P(pneumonia) 0.982 ...``. Names no patient data."""
        if self.finding is not None:
            return f"{self.finding.label}, P(pneumonia) {self.finding.probability:.3f}"
        note = self.model_output_note
        return self.not_applicable_headline + (f"; {note}" if note else "")


def interpret(*, label: str, probability: float, threshold: float, positive: bool,
              cause: str | None, cause_probability: float | None, in_scope: bool,
              scope_reason: str, population: str, population_reason: str,
              population_warning: str) -> ResultMeaning:
    """Decide what a prediction means (``Prediction.meaning`` calls this)."""
    applicable = is_applicable(in_scope, population_warning)
    output = ModelOutput(label, probability, positive, cause if positive else None,
                         cause_probability if positive else None)
    reasons: list[str] = []
    flags: list[Flag] = []
    if not in_scope:
        scope_reason = scope_reason or "not a frontal chest radiograph"
        reasons.append(f"Out of scope: {scope_reason}; the model's output means nothing for "
                       "this image.")
        flags.append(Flag(OUT_OF_SCOPE, scope_reason))
    # An image out of scope that is no chest radiograph is not assessed for its population;
    # its "unknown" says nothing the scope reason has not said. A chest radiograph out of
    # scope only by the model's features is (pneumoscan.scope.is_chest_radiograph): an
    # adult's film says so.
    if population_warning and (in_scope or population != UNKNOWN):
        reasons.append(population_warning)
        flags.append(Flag(_population_flag(population), population_reason))
    finding = Finding(label, probability, threshold, positive, output.cause,
                      output.cause_probability) if applicable else None
    return ResultMeaning(applicable=applicable, finding=finding, model_output=output,
                         threshold=threshold,
                         heatmap=HEATMAP_COLOUR if applicable else HEATMAP_GREY,
                         reasons=tuple(reasons), flags=tuple(flags),
                         show_model_output=not applicable and in_scope)


def _population_flag(population: str) -> str:
    if population == ADULT:
        return "adult"
    if population == PEDIATRIC:
        return "age outside 1-5"
    return "population unknown"
