"""Typed request and response bodies of the JSON API (what /docs shows)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pneumoscan import DISCLAIMER


class StudyFacts(BaseModel):
    """DICOM header facts that tell a reader the right study was loaded. No patient identity
    (no name, id, birth date or age); returned only, never logged."""

    modality: str = Field(default="", description="DICOM Modality, e.g. CR or DX.")
    body_part: str = Field(default="", description="DICOM BodyPartExamined, e.g. CHEST.")
    view: str = Field(default="", description="DICOM ViewPosition, e.g. PA or AP.")
    study_date: str = Field(default="", description="DICOM StudyDate as YYYY-MM-DD.")


class PatientIdentity(BaseModel):
    """Who a DICOM is of, for the reader to check against the request: returned to the user
    who uploaded the file only; never logged, never stored."""

    name: str = Field(default="", description="PatientName as FAMILY, Given Middle.")
    patient_id: str = Field(default="", description="PatientID.")
    birth_date: str = Field(default="", description="PatientBirthDate as YYYY-MM-DD.")
    sex: str = Field(default="", description="PatientSex: M, F or O.")
    accession_number: str = Field(default="", description="AccessionNumber.")
    study_date: str = Field(default="", description="StudyDate as YYYY-MM-DD.")
    study_description: str = Field(default="", description="StudyDescription.")


class WindowPreset(BaseModel):
    name: str = Field(description="WindowCenterWidthExplanation, or 'File window N'.")
    center: float
    width: float


class DisplayValues(BaseModel):
    """A DICOM's modality-LUT-applied values at full depth, for a viewer to window itself."""

    png: str = Field(description="Base64 16-bit grayscale PNG (at most 1024 px); each code "
                     "c stands for the value offset + scale * c.")
    offset: float
    scale: float
    low: float = Field(description="Smallest value in the image.")
    high: float = Field(description="Largest value in the image.")
    presets: list[WindowPreset] = Field(description="The file's windows (WindowCenter / "
                                        "WindowWidth), in its order; may be empty.")
    monochrome1: bool = Field(description="True: low values are shown bright.")


class ModelOutputResponse(BaseModel):
    """The model's raw output. Not a finding unless the result is applicable: programs may
    read it, but must not present it as a finding."""

    label: str = Field(description="A class name from the model card, e.g. PNEUMONIA.")
    probability: float = Field(description="Calibrated probability of pneumonia, 0..1.")
    positive: bool = Field(description="`probability` reached the threshold.")
    cause: str | None = Field(default=None, description="Bacterial or viral, computed for a "
                              "positive output only.")
    cause_probability: float | None = Field(default=None, description="P(bacterial | "
                                            "pneumonia), computed for a positive output only.")


class PredictionResponse(BaseModel):
    """One image's result. What it means (whether it applies, which fields are a finding,
    why not) is decided by the server (pneumoscan.result_meaning); show what it says."""

    applicable: bool = Field(
        description="True only when in scope and without a population warning. When false, "
        "there is no finding: `label`, `probability`, `positive` and `cause` are null and "
        "only `model_output` holds the model's raw output.")
    not_applicable_reasons: list[str] = Field(
        default_factory=list, description="Why the result does not apply, one sentence each; "
        "empty when it does.")
    label: str | None = Field(default=None, description="The finding: a class name from the "
                              "model card, e.g. PNEUMONIA; null when not applicable.")
    probability: float | None = Field(default=None, description="The finding's calibrated "
                                      "probability of pneumonia, 0..1; null when not "
                                      "applicable.")
    positive: bool | None = Field(default=None, description="The finding is pneumonia; null "
                                  "when not applicable.")
    threshold: float = Field(description="The model's operating threshold on the probability.")
    cause: str | None = Field(
        default=None, description="Secondary, lower-confidence estimate (bacterial or viral), "
        "only for an applicable pneumonia finding.")
    cause_probability: float | None = Field(
        default=None, description="P(bacterial | pneumonia), only with `cause`.")
    heatmap_style: str = Field(
        default="colour", description="colour: the heat map may be shown; grey: the result "
        "does not apply, so show no heat map unless the user asks, and then the greyed one "
        "returned here.")
    in_scope: bool = Field(description="False: not plausibly a frontal chest radiograph; "
                                       "the result is not meaningful.")
    scope_reason: str = Field(description="Why the image is out of scope, in words; empty "
                              "when in scope.")
    scope_distance: float | None = Field(
        default=None, description="Distance from the model's training radiographs in units "
        "of the scope cut-off (above 1: out of scope); null when not measured (the image "
        "checks decided, or the model has no scope fit).")
    population: str = Field(
        default="unknown", description="Who the image is of: pediatric, adult or unknown "
        "(from the DICOM age or birth and study dates when present, else estimated from the "
        "image). The model was validated on children aged 1-5 only.")
    population_reason: str = Field(default="", description="How the population was decided, "
                                   "in words (never a header value).")
    population_probability: float | None = Field(
        default=None, description="P(adult) estimated from the image; null when the DICOM "
        "header decided or the image was not assessed.")
    population_warning: str = Field(
        default="", description="Why the result does not apply to this patient (adult, an "
        "age outside 1-5, or unknown); empty when it does.")
    model_output: ModelOutputResponse = Field(
        description="The model's raw output, always present; a finding only when "
        "`applicable`.")
    model_output_note: str = Field(
        default="", description="For a result that does not apply to an image in scope: the "
        "model's output in words, saying it is not a finding, to show greyed; empty when "
        "people should not see the raw output (the result applies, or the image is out of "
        "scope).")
    model: str = Field(description="Model version.")
    width: int = Field(description="Width of the decoded image, pixels.")
    height: int = Field(description="Height of the decoded image, pixels.")
    heatmap_png: str | None = Field(
        default=None, description="Base64 PNG of the radiograph with the heat map (the model's "
        "evidence of pneumonia) "
        "blended on top (heatmap=true); greyed when `heatmap_style` is grey.")
    image_png: str | None = Field(
        default=None, description="Base64 PNG of the decoded radiograph as the model read it "
        "(image=true; useful for DICOM).")
    heatmap_layer_png: str | None = Field(
        default=None, description="Base64 RGBA PNG of the heat map alone (colour, with the "
        "heat as alpha; at most 256 px), to draw over `image_png` at any opacity "
        "(heatmap=true); greyed when `heatmap_style` is grey.")
    study: StudyFacts | None = Field(
        default=None, description="DICOM uploads: modality, body part, view and study date; "
        "null for JPEG and PNG.")
    identity: PatientIdentity | None = Field(
        default=None, description="DICOM uploads: the patient's identity from the header, "
        "for the reader; null for JPEG and PNG (they carry none). Never logged or stored.")
    display: DisplayValues | None = Field(
        default=None, description="DICOM uploads with image=true: the full-depth values "
        "and the file's window presets; null otherwise.")
    elapsed_ms: float = Field(description="Server time for this request, queueing included.")
    disclaimer: str = DISCLAIMER


class BatchItem(BaseModel):
    """One file of a batch: a result, or the error that file alone caused."""

    filename: str
    status: int = Field(description="The HTTP status this file would get on its own.")
    result: PredictionResponse | None = None
    detail: str | None = Field(default=None, description="What was wrong with the file.")


class BatchResponse(BaseModel):
    items: list[BatchItem]
    elapsed_ms: float


class ErrorResponse(BaseModel):
    """Every 4xx answer: one sentence a person can act on."""

    detail: str


class HealthResponse(BaseModel):
    status: str = Field(default="ok", description="ok, or stuck (answered with 503) while a "
                        "prediction has run longer than the server's stuck_after_s.")
    model: str
    backend: str
    max_upload_bytes: int
    max_batch_files: int
    predictions_running: int = Field(default=0, description="Predictions holding a slot.")
    longest_prediction_s: float = Field(default=0.0, description="How long the oldest "
                                        "running prediction has held its slot, seconds.")


class ModelInfo(BaseModel):
    """The model card's facts, and whether the model has a fitted input-scope check."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    name: str
    version: str
    arch: str
    class_names: list[str]
    cause_names: list[str]
    threshold: float
    threshold_rule: str
    preprocessing: dict[str, Any]
    validation: dict[str, Any]
    backend: str
    scope_check: bool = Field(description="True when the model has the training-image "
                              "statistics used to flag unfamiliar images.")
    disclaimer: str = DISCLAIMER


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorResponse, "description": "The upload is larger than the limit."},
    415: {"model": ErrorResponse, "description": "Not a JPEG, PNG or DICOM file."},
    422: {"model": ErrorResponse, "description": "Empty, truncated, undecodable or too many "
          "pixels; or the request is malformed."},
}
