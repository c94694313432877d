"""A prediction as a Comprehensive SR (highdicom), in the source image's study.

What it says is ``prediction.meaning``'s (:mod:`pneumoscan.result_meaning`). The content
tree, as dcmtk's ``dsrdump`` shows it::

    CONTAINER  Chest radiograph AI result (decision support)
      HAS OBS CONTEXT  Observer Type = Device; Device Observer UID, Name, Manufacturer,
                       Model Name (the model version)
      HAS CONCEPT MOD  Algorithm Name = pneumoscan; Algorithm Version = the model version
      CONTAINS TEXT    Disclaimer = "AI result - decision support, not for diagnostic use. ..."
      CONTAINS CODE    Result applicable = Yes | No   (in scope and no population warning)
        HAS PROPERTIES TEXT Reason the result does not apply       (one per reason, No only)
        INFERRED FROM  IMAGE Source image                          (No only)
      CONTAINS CODE    Input within the model's scope = Yes | No
        HAS PROPERTIES TEXT Scope reason                              (when out of scope)
      CONTAINS CODE    Patient population = Child | Adult | Unknown
        HAS PROPERTIES TEXT Population reason, NUM P(adult), TEXT warning (when present)
      CONTAINS CODE    Pneumonia = Present | Absent                    (applicable only)
        HAS PROPERTIES NUM  Probability (calibrated P(pneumonia)); Threshold Value
        INFERRED FROM  IMAGE Source image (the radiograph's SOP Class and Instance)
      CONTAINS CODE    Cause estimate = Bacterial | Viral pneumonia   (applicable positive only)
        HAS PROPERTIES NUM  Probability of a bacterial cause
      CONTAINS TEXT    Model output (not a finding) = "model output PNEUMONIA, ..."
                                                  (not applicable, image in scope only)

A result that does not apply codes no finding: the Pneumonia item is left out, not coded
with a qualifier. DICOM has a "not applicable / not measured" qualifier only for numbers
(the Numeric Value Qualifier of a NUM item, CID 42: "Measurement not attempted", "Value
unknown"...); a CODE item has none, and the templates that carry qualitative findings
(TID 1500's measurement groups, TID 1501 "Qualitative Evaluations") make them optional
(requirement type U or MC), so a finding that was not made is absent. This SR follows that.
The model's raw output goes only into a TEXT item named "not a finding", never a code or a
probability a program could take for one.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, TypeVar

import highdicom as hd
from highdicom.coding_schemes import CodingSchemeIdentificationItem
from highdicom.sr import (
    CodeContentItem,
    ContainerContentItem,
    ContentItem,
    ContentSequence,
    ImageContentItem,
    NumContentItem,
    TextContentItem,
)
from highdicom.sr import RelationshipTypeValues as Relation
from pydicom.dataset import Dataset
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

from pneumoscan.dicom_node import codes
from pneumoscan.dicom_node.result_identity import (
    DISCLAIMER_TEXT,
    MANUFACTURER,
    SR_SERIES_DESCRIPTION,
    SR_SERIES_NUMBER,
    evidence_header,
    instance_number,
    result_uids,
)
from pneumoscan.population import UNKNOWN

if TYPE_CHECKING:
    from pneumoscan.predictor import Prediction
    from pneumoscan.result_meaning import Finding

Item = TypeVar("Item", bound=ContentItem)

#: DICOM's limit on a TEXT content item (UT is longer, but keep reasons readable).
MAX_TEXT = 1024


def build_structured_report(source: Dataset, prediction: Prediction) -> hd.sr.ComprehensiveSR:
    """The Comprehensive SR of ``prediction`` for the radiograph ``source``.

    ``source`` needs its header only (pixels are not read): patient and study are copied
    from it, and the SR references its SOP instance (content tree and evidence sequence).

    Raises:
        SourceDatasetError: ``source`` lacks its study, series or instance UIDs.
    """
    source = evidence_header(source)
    uids = result_uids(source, prediction.model)
    root = ContainerContentItem(name=codes.REPORT_TITLE, template_id=None)
    meaning = prediction.meaning
    # What limits the result comes before it, as on every other face.
    result: list[ContentItem] = [_applicability(source, prediction), _scope(prediction),
                                 _population(prediction)]
    if meaning.finding is not None:
        result += [_finding(source, meaning.finding), *_cause(meaning.finding)]
    elif meaning.model_output_note:
        result.append(_text(codes.MODEL_OUTPUT, meaning.model_output_note, Relation.CONTAINS))
    _attach(root, [*_observation_context(prediction.model),
                   *hd.sr.AlgorithmIdentification(name=MANUFACTURER, version=prediction.model),
                   _text(codes.DISCLAIMER, DISCLAIMER_TEXT, Relation.CONTAINS), *result])
    return hd.sr.ComprehensiveSR(
        evidence=[source], content=root,
        series_instance_uid=uids.sr_series, series_number=SR_SERIES_NUMBER,
        sop_instance_uid=uids.sr_instance, instance_number=instance_number(source),
        manufacturer=MANUFACTURER, is_complete=True, is_final=False, is_verified=False,
        series_description=SR_SERIES_DESCRIPTION,
        coding_schemes=[CodingSchemeIdentificationItem(designator=codes.SCHEME,
                                                       name=codes.SCHEME_NAME)],
    )


def _observation_context(model_version: str) -> hd.sr.ObservationContext:
    """The observer is a device: pneumoscan, with its model as the model name."""
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=str(generate_uid(entropy_srcs=["pneumoscan-device", model_version])),
        name=MANUFACTURER, manufacturer_name=MANUFACTURER, model_name=model_version[:64])
    return hd.sr.ObservationContext(observer_device_context=hd.sr.ObserverContext(
        observer_type=codes.DEVICE, observer_identifying_attributes=device))


def _source_image(source: Dataset) -> ImageContentItem:
    return ImageContentItem(name=codes.SOURCE_IMAGE,
                            referenced_sop_class_uid=str(source.SOPClassUID),
                            referenced_sop_instance_uid=str(source.SOPInstanceUID),
                            relationship_type=Relation.INFERRED_FROM)


def _applicability(source: Dataset, prediction: Prediction) -> CodeContentItem:
    """Whether the result applies; when it does not, why, and the image it is about."""
    meaning = prediction.meaning
    if meaning.applicable:
        return _yes_no(codes.APPLICABLE, True, [])
    return _yes_no(codes.APPLICABLE, False,
                   [*(_text(codes.NOT_APPLICABLE_REASON, reason) for reason in meaning.reasons),
                    _source_image(source)])


def _finding(source: Dataset, finding: Finding) -> CodeContentItem:
    """Pneumonia present / absent, with its probability, threshold and source image."""
    item = CodeContentItem(name=codes.PNEUMONIA,
                           value=codes.PRESENT if finding.positive else codes.ABSENT,
                           relationship_type=Relation.CONTAINS)
    return _attach(item, [
        _number(codes.PROBABILITY, finding.probability),
        _number(codes.THRESHOLD, finding.threshold),
        _source_image(source),
    ])


def _cause(finding: Finding) -> list[CodeContentItem]:
    """The bacterial / viral estimate of a positive finding."""
    cause = codes.CAUSES.get(finding.cause or "")
    if cause is None or finding.cause_probability is None:
        return []
    item = CodeContentItem(name=codes.CAUSE_ESTIMATE, value=cause,
                           relationship_type=Relation.CONTAINS)
    return [_attach(item, [_number(codes.BACTERIAL_PROBABILITY, finding.cause_probability)])]


def _scope(prediction: Prediction) -> CodeContentItem:
    reason = [_text(codes.SCOPE_REASON, prediction.scope_reason)] \
        if prediction.scope_reason else []
    return _yes_no(codes.IN_SCOPE, prediction.in_scope, reason)


def _population(prediction: Prediction) -> CodeContentItem:
    item = CodeContentItem(name=codes.POPULATION,
                           value=codes.POPULATIONS.get(prediction.population,
                                                       codes.POPULATIONS[UNKNOWN]),
                           relationship_type=Relation.CONTAINS)
    properties: list[ContentItem] = []
    if prediction.population_reason:
        properties.append(_text(codes.POPULATION_REASON, prediction.population_reason))
    if prediction.population_probability is not None:
        properties.append(_number(codes.POPULATION_PROBABILITY,
                                  prediction.population_probability))
    if prediction.population_warning:
        properties.append(_text(codes.POPULATION_WARNING, prediction.population_warning))
    return _attach(item, properties)


def _yes_no(name: Code, value: bool, properties: Sequence[ContentItem]) -> CodeContentItem:
    return _attach(CodeContentItem(name=name, value=codes.YES if value else codes.NO,
                                   relationship_type=Relation.CONTAINS), properties)


def _attach(item: Item, children: Sequence[ContentItem]) -> Item:
    """``item`` with ``children`` as its content sequence (none: no sequence)."""
    if children:
        item.ContentSequence = ContentSequence(children)
    return item


def _number(name: Code, value: float) -> NumContentItem:
    return NumContentItem(name=name, value=round(float(value), 6), unit=codes.NO_UNITS,
                          relationship_type=Relation.HAS_PROPERTIES)


def _text(name: Code, value: str, relation: Relation = Relation.HAS_PROPERTIES,
          ) -> TextContentItem:
    return TextContentItem(name=name, value=value[:MAX_TEXT], relationship_type=relation)
