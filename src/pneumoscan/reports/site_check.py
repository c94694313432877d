"""``pneumoscan site-check``: a site's unlabelled films against the model's validation films.

Before go-live, on films the site has not labelled: does the model see them as it saw the
images it was validated on? Compared with the model's stored reference
(:mod:`pneumoscan.reference`, its patient-level validation images):

- the share out of scope, and the population mix (adult, unknown) of those in scope;
- the distribution of P(pneumonia) of the films the result applies to (two-sample
  Kolmogorov-Smirnov test, and the share called pneumonia);
- a two-sample test on the pooled features and the layout thumbnail (what the scope and
  population checks read): a domain classifier (scikit-learn's logistic regression on the
  standardised features, strongly regularised) tells site films from validation films,
  scored out of fold (5 folds); its ROC AUC is 0.5 when they cannot be told apart. The
  95 % interval is the percentile bootstrap of the out-of-fold scores. On the shipped
  model the thumbnail and C = 0.001 separated the out-of-protocol block best (AUC 0.66
  against 0.60 for the features alone at C = 0.01) while 300 training images stayed at
  0.45-0.50.

The verdict (:func:`verdict`) says in words whether the validation figures can be expected
to hold and whether to run ``pneumoscan calibrate``. Its cut-offs are set on measured
separations (docs/benchmarks.md, "Site check").
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pneumoscan.decision import decide
from pneumoscan.errors import DataLayoutError, ModelFileError, PneumoscanError
from pneumoscan.imaging import DecodedImage
from pneumoscan.metrics import bootstrap_auc_interval, wilson_interval
from pneumoscan.population import ADULT, UNKNOWN, from_image
from pneumoscan.predictor import Prediction, Predictor
from pneumoscan.preprocessing import resize_all
from pneumoscan.reference import REFERENCE, Reference, load_reference
from pneumoscan.scope import thumbnail

logger = logging.getLogger(__name__)

#: Fewest readable films the check compares (5 folds of the domain classifier need them).
MIN_FILMS = 20
#: Domain AUC whose lower 95 % bound reaches it: the films clearly differ.
CLEAR_SHIFT_AUC = 0.80
#: Domain AUC whose lower 95 % bound reaches it: the films differ measurably.
SOME_SHIFT_AUC = 0.60
#: Shares above which a warning is given: out of scope, adult (of those in scope).
HIGH_SHARE = 0.10
#: Inverse regularisation of the domain classifier (standardised features, ~1,850 of them).
DOMAIN_C = 0.001


@dataclass(frozen=True)
class FilmSummary:
    """One side of the comparison: what the model made of a set of films."""

    n: int  # films compared (readable)
    out_of_scope: int
    adult: int  # of those in scope
    unknown: int  # of those in scope, population undetermined
    probabilities: np.ndarray  # P(pneumonia) of the films the result applies to
    positive: int  # of those, called pneumonia

    @property
    def in_scope(self) -> int:
        return self.n - self.out_of_scope

    @property
    def applicable(self) -> int:
        return len(self.probabilities)

    def share(self, count: int, of: int) -> tuple[float, list[float]]:
        """``count / of`` with its 95 % Wilson interval (NaN when ``of`` is 0)."""
        return (count / of if of else float("nan")), wilson_interval(count, of)


@dataclass(frozen=True)
class SiteCheck:
    """The comparison and its verdict."""

    model: str
    site: FilmSummary
    reference: FilmSummary
    unreadable: int
    domain_auc: float
    domain_auc_ci95: list[float]
    ks_statistic: float
    ks_pvalue: float
    verdict: list[str] = field(default_factory=list)  # sentences, the first the summary
    calibrate: bool = False  # whether to run `pneumoscan calibrate` before go-live
    holds: bool = False  # whether the validation figures can be expected to hold


def site_films(predictor: Predictor, files: Sequence[Path], *, batch_size: int = 32,
               progress: Callable[[int], None] | None = None,
               ) -> tuple[list[Prediction], np.ndarray, int]:
    """The predictions, and the pooled features with the layout thumbnail ``(N, C + T)``,
    of the readable ``files``, and the number unreadable. The pooled features come from a
    second pass of the same backend over the same model inputs (the Predictor does not
    hand them out)."""
    predictions: list[Prediction] = []
    pooled: list[np.ndarray] = []
    unreadable = 0
    for start in range(0, len(files), batch_size):
        decoded: list[DecodedImage] = []
        for path in files[start:start + batch_size]:
            try:
                decoded.append(predictor.decode(path))
            except (PneumoscanError, OSError) as exc:
                logger.warning("cannot read %s", exc)
                unreadable += 1
            except Exception as exc:  # corrupt files raise many types; one must not end it
                logger.warning("cannot read a file (%s)", exc.__class__.__name__)
                unreadable += 1
        if decoded:
            predictions.extend(predictor.predict_decoded(decoded, heatmap=False))
            config = predictor.card.preprocessing
            resized = resize_all((d.pixels for d in decoded), config.image_size,
                                 config.source_size)  # (B, S, S)
            pooled.append(np.concatenate([predictor.pooled_features(resized),
                                          np.stack([thumbnail(r) for r in resized])], axis=1))
        if progress is not None:
            progress(len(files[start:start + batch_size]))
    features = np.concatenate(pooled) if pooled else np.zeros((0, 0), np.float32)
    return predictions, features, unreadable


def summarize_site(predictions: Sequence[Prediction]) -> FilmSummary:
    """:class:`FilmSummary` of a site's predictions."""
    in_scope = [p for p in predictions if p.in_scope]
    applicable = [p for p in predictions if p.applicable]
    return FilmSummary(
        n=len(predictions), out_of_scope=len(predictions) - len(in_scope),
        adult=sum(p.population == ADULT for p in in_scope),
        unknown=sum(p.population == UNKNOWN for p in in_scope),
        probabilities=np.array([p.probability for p in applicable]),
        positive=sum(p.is_pneumonia for p in applicable))


def summarize_reference(predictor: Predictor, reference: Reference) -> FilmSummary:
    """:class:`FilmSummary` of the validation images, through the model's current scope
    and population fits and its card's calibration and threshold."""
    decisions = decide(reference.logits, predictor.card)
    scope = predictor.scope
    if scope is None:
        in_scope = np.zeros(len(reference.labels), bool)
    else:
        in_scope = np.array([scope.layout.ratio(t) <= 1.0 and scope.features.ratio(f) <= 1.0
                             for t, f in zip(reference.thumbnails.astype(np.float64),
                                             reference.pooled.astype(np.float64),
                                             strict=True)])
    population = []
    for pooled, thumb, inside in zip(reference.pooled, reference.thumbnails, in_scope,
                                     strict=True):
        if not inside or predictor.population is None:
            population.append(UNKNOWN)
            continue
        features = np.concatenate([pooled.astype(np.float64), thumb.astype(np.float64)])
        p_adult = float(predictor.population.probability(features))
        population.append(from_image(p_adult, predictor.population).population)
    populations = np.array(population)
    applicable = in_scope & (populations != ADULT) & (populations != UNKNOWN)
    return FilmSummary(n=len(in_scope), out_of_scope=int((~in_scope).sum()),
                       adult=int((in_scope & (populations == ADULT)).sum()),
                       unknown=int((in_scope & (populations == UNKNOWN)).sum()),
                       probabilities=decisions.probability[applicable],
                       positive=int(decisions.positive[applicable].sum()))


def domain_auc(reference: np.ndarray, site: np.ndarray, *,
               seed: int = 0) -> tuple[float, list[float]]:
    """Out-of-fold ROC AUC of a classifier telling ``site`` ``(M, D)`` from ``reference``
    ``(N, D)`` feature vectors, with its 95 % bootstrap interval."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features = np.concatenate([reference, site]).astype(np.float64)
    labels = np.r_[np.zeros(len(reference), int), np.ones(len(site), int)]
    classifier = make_pipeline(StandardScaler(), LogisticRegression(
        C=DOMAIN_C, class_weight="balanced", max_iter=2000))
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    scores = cross_val_predict(classifier, features, labels, cv=folds,
                               method="decision_function")
    return float(roc_auc_score(labels, scores)), bootstrap_auc_interval(labels, scores,
                                                                         seed=seed)


def check_site(predictor: Predictor, model: Path | str | None, files: Sequence[Path], *,
               batch_size: int = 32,
               progress: Callable[[int], None] | None = None) -> SiteCheck:
    """Compare ``files`` with the model's validation films.

    Raises:
        ModelFileError: the model has no site-check reference for its weights.
        DataLayoutError: fewer than :data:`MIN_FILMS` readable films.
    """
    from scipy.stats import ks_2samp

    reference = load_reference(model)
    if reference is None:
        raise ModelFileError("this model has no site-check reference (its validation images "
                             f"as it sees them); make it: {REFERENCE.command(model)}")
    predictions, pooled, unreadable = site_films(predictor, files, batch_size=batch_size,
                                                 progress=progress)
    if len(predictions) < MIN_FILMS:
        raise DataLayoutError(f"{len(predictions)} readable films ({unreadable} unreadable); "
                              f"the site check needs at least {MIN_FILMS}, better 100 or more")
    site = summarize_site(predictions)
    ours = summarize_reference(predictor, reference)
    auc, interval = domain_auc(np.concatenate([reference.pooled, reference.thumbnails],
                                              axis=1), pooled)
    if site.applicable and ours.applicable:
        ks = ks_2samp(site.probabilities, ours.probabilities)
        statistic, pvalue = float(ks.statistic), float(ks.pvalue)
    else:
        statistic, pvalue = float("nan"), float("nan")
    check = SiteCheck(model=predictor.version, site=site, reference=ours,
                      unreadable=unreadable, domain_auc=auc, domain_auc_ci95=interval,
                      ks_statistic=statistic, ks_pvalue=pvalue)
    sentences, calibrate, holds = verdict(check)
    return SiteCheck(**{**check.__dict__, "verdict": sentences, "calibrate": calibrate,
                        "holds": holds})


def verdict(check: SiteCheck) -> tuple[list[str], bool, bool]:
    """Plain sentences (the first one the summary), whether to calibrate, whether the
    validation figures can be expected to hold."""
    low = check.domain_auc_ci95[0]
    auc = f"{check.domain_auc:.2f} [{check.domain_auc_ci95[0]:.2f}, " \
          f"{check.domain_auc_ci95[1]:.2f}]"
    if low >= CLEAR_SHIFT_AUC:
        sentences = [f"These films differ clearly from the model's validation films (a "
                     f"classifier tells them apart with AUC {auc}): its validation figures "
                     "cannot be expected to hold here. Before go-live, label 100-200 of "
                     "your films, run `pneumoscan calibrate` on them and `pneumoscan "
                     "evaluate` on others."]
        calibrate, holds = True, False
    elif low >= SOME_SHIFT_AUC:
        sentences = [f"These films differ measurably from the model's validation films "
                     f"(AUC {auc}): its ranking may hold, but its probabilities and its "
                     "threshold may not. Run `pneumoscan calibrate` on 100-200 of your "
                     "labelled films before go-live."]
        calibrate, holds = True, False
    else:
        sentences = [f"These films are not clearly different from the model's validation "
                     f"films (AUC {auc}, 0.5 = indistinguishable): its validation figures "
                     "can be expected to hold roughly. `pneumoscan calibrate` on your own "
                     "labelled films still sets the threshold for your patients and is "
                     "advised where 100 labelled films can be had."]
        calibrate, holds = False, True
    site = check.site
    out_share = site.out_of_scope / site.n
    if out_share > HIGH_SHARE:
        sentences.append(f"{out_share:.0%} of the films are out of scope (the validation "
                         f"films: {check.reference.out_of_scope / check.reference.n:.0%}): "
                         "check which images are sent (views, modalities, body parts); the "
                         "model gives them no finding.")
        holds = False
    if site.in_scope and site.adult / site.in_scope > HIGH_SHARE:
        sentences.append(f"{site.adult / site.in_scope:.0%} of the films in scope look like "
                         "adults': the model was validated on children aged 1-5, and its "
                         "results on adults do not apply.")
        holds = False
    expected = check.reference.positive / max(check.reference.applicable, 1)
    observed = site.positive / site.applicable if site.applicable else 0.0
    if site.applicable and observed > 2 * expected:
        sentences.append(f"It calls {observed:.0%} of these films pneumonia, over twice the "
                         f"share on its validation films ({expected:.0%}).")
    return sentences, calibrate, holds
