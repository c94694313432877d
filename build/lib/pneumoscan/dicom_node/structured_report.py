"""A prediction as a Comprehensive SR (highdicom), in the source image's study.

The content tree, as dcmtk's ``dsrdump`` shows it::

    CONTAINER  Chest radiograph AI result (decision support)
      HAS OBS CONTEXT  Observer Type = Device; Device Observer UID, Name, Model Name
      HAS CONCEPT MOD  Algorithm Name = pneumoscan; Algorithm Version = the model version
      CONTAINS TEXT    Disclaimer = "AI result - decision support, not for diagnostic use. ..."
      CONTAINS CODE    Pneumonia = Present | Absent
        HAS PROPERTIES NUM  Probability (calibrated P(pneumonia)); Threshold Value
        INFERRED FROM  IMAGE Source image (the radiograph's SOP Class and Instance)
      CONTAINS CODE    Cause estimate = Bacterial | Viral pneumonia   (positive results only)
        HAS PROPERTIES NUM  Probability of a bacterial cause
      CONTAINS CODE    Input within the model's scope = Yes | No
        HAS PROPERTIES TEXT Scope reason                              (when out of scope)
      CONTAINS CODE    Patient population = Child | Adult | Unknown
        HAS PROPERTIES TEXT Population reason, NUM P(adult), TEXT warning (when present)
      CONTAINS CODE    Result applicable = Yes | No   (in scope and no population warning)
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
    _attach(root, [*_observation_context(prediction.model),
                   *hd.sr.AlgorithmIdentification(name=MANUFACTURER, version=prediction.model),
                   _text(codes.DISCLAIMER, DISCLAIMER_TEXT, Relation.CONTAINS),
                   # what limits the result comes before it, as on every other face
                   _yes_no(codes.APPLICABLE, prediction.applicable, []), _scope(prediction),
                   _population(prediction), _finding(source, prediction),
                   *_cause(prediction)])
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


def _finding(source: Dataset, prediction: Prediction) -> CodeContentItem:
    """Pneumonia present / absent, with its probability, threshold and source image."""
    item = CodeContentItem(name=codes.PNEUMONIA,
                           value=codes.PRESENT if prediction.is_pneumonia else codes.ABSENT,
                           relationship_type=Relation.CONTAINS)
    return _attach(item, [
        _number(codes.PROBABILITY, prediction.probability),
        _number(codes.THRESHOLD, prediction.threshold),
        ImageContentItem(name=codes.SOURCE_IMAGE,
                         referenced_sop_class_uid=str(source.SOPClassUID),
                         referenced_sop_instance_uid=str(source.SOPInstanceUID),
                         relationship_type=Relation.INFERRED_FROM),
    ])


def _cause(prediction: Prediction) -> list[CodeContentItem]:
    """The bacterial / viral estimate, only for an applicable pneumonia result (the page,
    the CLI and the worklist leave it out otherwise too)."""
    cause = codes.CAUSES.get(prediction.cause or "")
    if cause is None or prediction.cause_probability is None or not prediction.applicable:
        return []
    item = CodeContentItem(name=codes.CAUSE_ESTIMATE, value=cause,
                           relationship_type=Relation.CONTAINS)
    return [_attach(item, [_number(codes.BACTERIAL_PROBABILITY,
                                   prediction.cause_probability)])]


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
