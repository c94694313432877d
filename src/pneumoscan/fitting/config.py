"""Training hyper-parameters in one dataclass, read from TOML and saved beside the model."""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from pneumoscan.fitting.augmentation import AugmentConfig


@dataclass(frozen=True)
class TrainConfig:
    """Every choice a training run makes; the resolved copy is saved as ``config.toml``."""

    arch: str = "efficientnet_lite0"  # a name create_model() knows
    pretrained: bool = True  # start from offline ImageNet weights where they exist
    image_size: int = 224  # model input side, pixels
    equalize: bool = False  # histogram-equalise inputs (stored in the model's preprocessing)
    equalize_midtones: bool = False  # equalise on grey levels 1-254 only (pure black and
    # white keep their level; stored in the model's preprocessing)
    source_size: int = 0  # every input first squashed to this side with an area filter (the
    # training data's 224 px; stored in the model's preprocessing); 0 = straight to image_size
    epochs: int = 8  # upper bound; early stopping may end sooner
    batch_size: int = 32
    lr: float = 1e-3  # AdamW peak learning rate
    weight_decay: float = 0.05
    warmup_epochs: float = 0.5  # linear warm-up, then cosine decay to 0
    dropout: float = 0.3  # before the linear head
    label_smoothing: float = 0.05  # targets 0/1 become eps/2 and 1 - eps/2
    cause_loss_weight: float = 0.5  # weight of the bacterial-vs-viral loss
    consistency: float = 0.0  # weight of the squared difference between the pneumonia
    # logits of each augmented image and its re-encoded copy (augmentation.reencoded); 0 = off
    val_fraction: float = 0.15  # patient-level share of train/ held out for validation
    protocol_fraction: float = 0.0  # share of consecutive-patient blocks held out first
    # (validation out of protocol; 0 = none, as in models trained before it existed)
    edge_blocks: int = 0  # earliest and latest blocks (of 20) of each numbering series taken
    # out of training: validation at the edge of time (pneumoscan.dataset.edge_patients)
    flip_average: bool = False  # evaluate the image and its mirror image averaged (models.py)
    select_last_epoch: bool = False  # keep the last epoch (a fixed schedule), not the one
    # with the best clean validation AUC
    seed: int = 0
    # The seed of the train/validation split; -1: ``seed``. Another ``seed`` with the same
    # ``split_seed`` changes only the initialisation, order, augmentation and dropout: two
    # runs compared on the same held-out patients.
    split_seed: int = -1
    patience: int = 3  # early stopping: epochs without a better validation AUC
    threshold_rule: str = "plateau"  # "plateau": median of the near-best Youden plateau on
    # validation (clean + shifted); "worst-case": prevalence-neutral calibration on every
    # held-out set, the most specific threshold keeping min_sensitivity on each of them
    min_sensitivity: float = 0.95  # threshold rule: lowest sensitivity accepted
    threshold_plateau: float = 0.02  # threshold rule: Youden J within this of its best
    threads: int = 0  # torch CPU threads; 0 = all cores
    adults: tuple[str, ...] = ()  # folders of adult frontal films: fit the population
    # check on them after training (pneumoscan.fitting.population_fitting); () = not fitted
    # (fit-population later). A single string (older configs) is one folder.
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def with_overrides(self, **overrides: Any) -> TrainConfig:
        """A copy with the non-None ``overrides`` applied."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """Build a TrainConfig from a (TOML) dict, naming any unknown key."""
    known = {f.name for f in fields(TrainConfig)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"unknown training setting(s) {sorted(unknown)}; known: {sorted(known)}")
    values = dict(data)
    if "augment" in values:
        augment_known = {f.name for f in fields(AugmentConfig)}
        bad = set(values["augment"]) - augment_known
        if bad:
            raise ValueError(f"unknown [augment] setting(s) {sorted(bad)}; known: "
                             f"{sorted(augment_known)}")
        values["augment"] = AugmentConfig(**values["augment"])
    if "adults" in values:
        adults = values["adults"]
        values["adults"] = tuple(([adults] if adults else []) if isinstance(adults, str)
                                 else adults)
    return TrainConfig(**values)


def load_config(path: Path | str | None) -> TrainConfig:
    """Read a TOML training config (None: the defaults)."""
    if path is None:
        return TrainConfig()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: config file not found")
    with path.open("rb") as handle:
        return config_from_dict(tomllib.load(handle))


def dump_config(config: TrainConfig) -> str:
    """Serialise a TrainConfig as TOML (flat scalars plus one [augment] table)."""
    import tomli_w

    return tomli_w.dumps(config.to_dict())
