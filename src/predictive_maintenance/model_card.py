"""The model card: what a registered version is, how good it is, where not to trust it.

A short JSON document in the spirit of SageMaker Model Cards, built from the training pipeline's
reports (:func:`create_model_card`): the model (objective, trees, features, decision threshold and
its rule), the data it was trained on, its test metrics at the chosen threshold (with the expected
cost per 1,000 machines when the metrics price the errors), its calibration (Brier score and ECE,
raw and calibrated), its failure-mode results (per-mode F1, macro-F1 over the rule modes) and the
known limits and intended use from the parameters. It travels inside ``model.tar.gz``
(``model_card.json``, sha256 in the archive's spec), with the registry version (the local
registry's version.json; SageMaker: the model package's ``ModelCard`` plus a copy beside the
archive) and is shown by ``kedro model list``/``show`` and on the endpoint's page.

Pure functions, no Kedro: the deployment pipeline's node, the registries and the CLI call them.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any, Final

from predictive_maintenance.failure_modes import MODE_NAMES, RULE_MODES, UNPREDICTABLE_MODES

#: The card's layout version: readers of older cards show what they find.
CARD_FORMAT: Final = 1
#: Figures on the card are rounded to this many decimals (a card is read, not computed with;
#: metrics.json keeps full precision).
DECIMALS: Final = 4
#: The card's size limit in bytes (compact JSON): it is answered with explained predictions.
MAX_CARD_BYTES: Final = 3072
#: Where :func:`render_card` wraps long texts (the rule, the intended use, the limits).
TEXT_WIDTH: Final = 96
#: The SageMaker model package card's status: this project's card is generated, not reviewed.
SAGEMAKER_CARD_STATUS: Final = "Draft"
#: What ``kedro model list`` shows per version: column title -> the card's value.
SUMMARY_COLUMNS: Final = {
    "ECE": ("calibration", "ece", "calibrated"),
    "MODES F1": ("failure_modes", "rule_modes_macro_f1"),
}
_MISSING = object()
#: The Model Package Model Card Schema's longest free text (intended uses, caveats).
_SCHEMA_TEXT = 2048


class ModelCardError(ValueError):
    """An input of the card lacks a field, or holds something else than the card needs there."""


def _get(document: Any, source: str, path: str, default: Any = _MISSING) -> Any:
    value = document
    for key in path.split("."):
        if not isinstance(value, Mapping) or key not in value:
            if default is not _MISSING:
                return default
            raise ModelCardError(f"model card: {source} has no {path!r}")
        value = value[key]
    return value


def _number(document: Any, source: str, path: str, default: Any = _MISSING) -> float | None:
    value = _get(document, source, path, default)
    if value is None and default is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ModelCardError(f"model card: {source} {path!r} is {value!r}, not a number")
    return round(float(value), DECIMALS)


def _count(document: Any, source: str, path: str) -> int:
    value = _get(document, source, path)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ModelCardError(f"model card: {source} {path!r} is {value!r}, not a count")
    return value


def _flag(document: Any, source: str, path: str) -> bool:
    value = _get(document, source, path)
    if not isinstance(value, bool):
        raise ModelCardError(f"model card: {source} {path!r} is {value!r}, not true or false")
    return value


def _text(document: Any, source: str, path: str) -> str:
    value = _get(document, source, path)
    if not isinstance(value, str) or not value.strip():
        raise ModelCardError(f"model card: {source} {path!r} must be a non-empty text")
    return value.strip()


def _model(spec: Mapping[str, Any]) -> dict[str, Any]:
    features = _get(spec, "model_spec", "features")
    if not isinstance(features, list) or not all(isinstance(name, str) for name in features):
        raise ModelCardError("model card: model_spec 'features' must be a list of names")
    return {
        "objective": _text(spec, "model_spec", "objective"),
        "trees": _count(spec, "model_spec", "trees"),
        "tree_method": _text(spec, "model_spec", "tree_method"),
        "features": list(features),
        "model_sha256": _text(spec, "model_spec", "model_sha256"),
        "decision_threshold": _number(spec, "model_spec", "decision_threshold"),
        "threshold_rule": _text(spec, "model_spec", "threshold_rule"),
    }


def _data(spec: Mapping[str, Any]) -> dict[str, Any]:
    splits = _get(spec, "model_spec", "training_data.splits")
    if not isinstance(splits, Mapping) or not splits:
        raise ModelCardError("model card: model_spec 'training_data.splits' must name the splits")
    return {
        "raw_sha256": _text(spec, "model_spec", "training_data.raw_sha256"),
        "splits": {
            name: {
                "rows": _count(splits, "model_spec training_data.splits", f"{name}.rows"),
                "failures": _count(splits, "model_spec training_data.splits", f"{name}.failures"),
            }
            for name in splits
        },
    }


def _metrics(metrics: Mapping[str, Any]) -> dict[str, Any]:
    card = {
        "split": "test",
        "rows": _count(metrics, "metrics", "rows"),
        "failures": _count(metrics, "metrics", "failures"),
        "roc_auc": _number(metrics, "metrics", "roc_auc"),
        "pr_auc": _number(metrics, "metrics", "pr_auc"),
        **{
            name: _number(metrics, "metrics", f"at_chosen_threshold.{name}")
            for name in ("f1", "precision", "recall")
        },
    }
    # Metrics written before the costs existed do not price the errors: the card then has none.
    cost = _number(metrics, "metrics", "at_chosen_threshold.expected_cost_per_1000", None)
    if cost is not None:
        card["expected_cost_per_1000"] = round(cost, 1)
        costs = _get(metrics, "metrics", "costs", None)
        if isinstance(costs, Mapping):
            card["costs"] = {key: costs[key] for key in sorted(costs)}
    return card


def _calibration(report: Mapping[str, Any]) -> dict[str, Any]:
    source = "calibration_report"
    return {
        "method": _text(report, source, "method"),
        "brier": {kind: _number(report, source, f"brier.{kind}") for kind in ("raw", "calibrated")},
        "ece": {kind: _number(report, source, f"ece.{kind}") for kind in ("raw", "calibrated")},
        "ece_target": _number(report, source, "ece_target"),
        "target_met": _flag(report, source, "ece_target_met"),
    }


def _failure_modes(report: Mapping[str, Any]) -> dict[str, Any]:
    source = "failure_mode_report"
    per_mode = _get(report, source, "per_mode")
    if not isinstance(per_mode, Mapping):
        raise ModelCardError(f"model card: {source} 'per_mode' must map each mode to its results")
    modes = {}
    for mode in MODE_NAMES:
        if mode not in per_mode:
            raise ModelCardError(f"model card: {source} has no 'per_mode.{mode}'")
        modes[mode] = {
            name: _number(per_mode, f"{source} per_mode", f"{mode}.{name}")
            for name in ("precision", "recall", "f1")
        }
        modes[mode]["support"] = _count(per_mode, f"{source} per_mode", f"{mode}.support")
    card = {
        "per_mode": modes,
        "rule_modes": list(RULE_MODES),
        "rule_modes_macro_f1": _number(report, source, "rule_modes_macro_f1"),
        "target_macro_f1": _number(report, source, "target_macro_f1"),
        "target_met": _flag(report, source, "target_met"),
        "unpredictable": list(UNPREDICTABLE_MODES),
    }
    # Among failed test machines, how often the likely mode (what the endpoint shows) is right.
    given_failure = _number(report, source, "mode_given_failure.accuracy", None)
    if given_failure is not None:
        card["likely_mode_right_on_failures"] = given_failure
    return card


def _settings(settings: Mapping[str, Any]) -> tuple[str, list[str]]:
    intended_use = _text(settings, "params:model_card", "intended_use")
    limits = _get(settings, "params:model_card", "known_limits")
    if (
        not isinstance(limits, Sequence)
        or isinstance(limits, str)
        or not all(isinstance(limit, str) and limit.strip() for limit in limits)
    ):
        raise ModelCardError("model card: params:model_card 'known_limits' must be a list of texts")
    return intended_use, [limit.strip() for limit in limits]


def create_model_card(
    model_spec: Mapping[str, Any],
    metrics: Mapping[str, Any],
    calibration_report: Mapping[str, Any],
    failure_mode_report: Mapping[str, Any],
    model_card: Mapping[str, Any],
) -> dict[str, Any]:
    """The model's card from the training pipeline's reports (see the module docstring).

    Args:
        model_spec: ``create_model_spec``'s output.
        metrics: ``evaluate_model``'s test metrics (``at_chosen_threshold.expected_cost_per_1000``
            and ``costs`` are optional: shown when present).
        calibration_report: ``evaluate_calibration``'s report.
        failure_mode_report: ``evaluate_failure_modes``'s report: ``per_mode`` (each of the five
            modes: ``precision``, ``recall``, ``f1``, ``support``), ``rule_modes_macro_f1``,
            ``target_macro_f1``, ``target_met``.
        model_card: The parameters: ``intended_use`` (text) and ``known_limits`` (texts).

    Raises:
        ModelCardError: naming the input and the field that is missing or wrong, or the card is
            larger than :data:`MAX_CARD_BYTES`.
    """
    intended_use, known_limits = _settings(model_card)
    card = {
        "card_format": CARD_FORMAT,
        "model": _model(model_spec),
        "data": _data(model_spec),
        "metrics": _metrics(metrics),
        "calibration": _calibration(calibration_report),
        "failure_modes": _failure_modes(failure_mode_report),
        "intended_use": intended_use,
        "known_limits": known_limits,
    }
    size = len(card_bytes(card))
    if size > MAX_CARD_BYTES:
        raise ModelCardError(
            f"model card: {size:,} bytes, more than {MAX_CARD_BYTES:,}: shorten "
            "params:model_card's known_limits or intended_use"
        )
    return card


def card_bytes(card: Mapping[str, Any]) -> bytes:
    """The card as the archive and the registry store it: compact JSON, keys in card order."""
    try:
        text = json.dumps(card, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as error:
        raise ModelCardError(f"model card: not JSON (no NaN or infinity): {error}") from error
    return text.encode("utf-8")


def check_card(card: Any) -> dict[str, Any]:
    """A card to store, checked: a JSON object with a ``card_format``, within the size limit.

    Raises:
        ModelCardError: saying what is wrong.
    """
    if not isinstance(card, Mapping):
        raise ModelCardError(f"a model card is a JSON object, not {type(card).__name__}")
    if "card_format" not in card:
        raise ModelCardError(
            "a model card needs 'card_format' (see predictive_maintenance.model_card)"
        )
    size = len(card_bytes(card))
    if size > MAX_CARD_BYTES:
        raise ModelCardError(f"the model card has {size:,} bytes, more than {MAX_CARD_BYTES:,}")
    return json.loads(card_bytes(card))


def card_value(card: Mapping[str, Any] | None, *path: str) -> float | None:
    """A number on the card (``card_value(card, "calibration", "ece", "calibrated")``), or None
    when the card (or the field) is absent: versions registered before cards had none."""
    value: Any = card
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def card_summary(card: Mapping[str, Any] | None) -> dict[str, str]:
    """The card's figures in ``kedro model list``'s columns (:data:`SUMMARY_COLUMNS`): each
    formatted to four decimals, ``-`` when absent."""
    summary = {}
    for column, path in SUMMARY_COLUMNS.items():
        value = card_value(card, *path)
        summary[column] = "-" if value is None else f"{value:.4f}"
    return summary


def _figure(value: Any, digits: int = DECIMALS) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "-"
    return f"{value:.{digits}f}"


def _thousands(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else "-"


def _wrapped(first: str, text: Any, indent: str = " " * 14) -> list[str]:
    return textwrap.wrap(
        f"{first}{text}", TEXT_WIDTH, subsequent_indent=indent, break_on_hyphens=False
    ) or [first.rstrip()]


def _met(value: Any) -> str:
    return {True: "met", False: "NOT met"}.get(value, "?")


def render_card(card: Mapping[str, Any]) -> str:
    """The card as text for a terminal (``kedro model show``); absent fields show as ``-``."""
    model = card.get("model") or {}
    data = card.get("data") or {}
    metrics = card.get("metrics") or {}
    calibration = card.get("calibration") or {}
    modes = card.get("failure_modes") or {}
    splits = data.get("splits") or {}
    lines = [
        f"Model:        {model.get('objective', '-')}, {model.get('trees', '-')} trees "
        f"({model.get('tree_method', '-')}), {len(model.get('features') or [])} features",
        *_wrapped(
            f"Threshold:    {_figure(model.get('decision_threshold'))}: ",
            model.get("threshold_rule", "-"),
        ),
        *_wrapped(
            f"Data:         raw sha256 {str(data.get('raw_sha256', '-'))[:12]}; ",
            ", ".join(
                f"{name} {_thousands(item.get('rows'))} rows ({item.get('failures', '-')} failures)"
                for name, item in splits.items()
            ),
        ),
        *_wrapped(
            "Test:         ",
            f"F1 {_figure(metrics.get('f1'))}, precision {_figure(metrics.get('precision'))}, "
            f"recall {_figure(metrics.get('recall'))}, ROC AUC {_figure(metrics.get('roc_auc'))}, "
            f"PR AUC {_figure(metrics.get('pr_auc'))} ({metrics.get('failures', '-')} failures in "
            f"{_thousands(metrics.get('rows'))} rows)",
        ),
    ]
    if "expected_cost_per_1000" in metrics:
        costs = metrics.get("costs") or {}
        priced = ", ".join(f"{key.replace('_', ' ')} {value:,}" for key, value in costs.items())
        lines.append(
            f"Cost:         {metrics['expected_cost_per_1000']:,.0f} per 1,000 machines"
            + (f" ({priced})" if priced else "")
        )
    brier = calibration.get("brier") or {}
    ece = calibration.get("ece") or {}
    lines.append(
        f"Calibration:  {calibration.get('method', '-')}; Brier {_figure(brier.get('raw'))} -> "
        f"{_figure(brier.get('calibrated'))}, ECE {_figure(ece.get('raw'))} -> "
        f"{_figure(ece.get('calibrated'))} (target <= {_figure(calibration.get('ece_target'))}: "
        f"{_met(calibration.get('target_met'))})"
    )
    per_mode = modes.get("per_mode") or {}
    unpredictable = set(modes.get("unpredictable") or ())
    lines.append(
        f"Modes:        macro-F1 over {', '.join(m.upper() for m in modes.get('rule_modes') or [])}"
        f" {_figure(modes.get('rule_modes_macro_f1'))} (target >= "
        f"{_figure(modes.get('target_macro_f1'))}: {_met(modes.get('target_met'))})"
    )
    if "likely_mode_right_on_failures" in modes:
        lines.append(
            "              likely mode right on "
            f"{_figure(100 * modes['likely_mode_right_on_failures'], 1)} % of the failed test "
            "machines"
        )
    for mode, item in per_mode.items():
        note = "  unpredictable" if mode in unpredictable else ""
        lines.append(
            f"  {mode.upper():<4} {MODE_NAMES.get(mode, mode):<17} F1 {_figure(item.get('f1'))}"
            f"  precision {_figure(item.get('precision'))}  recall {_figure(item.get('recall'))}"
            f"  ({item.get('support', '-')} in test){note}"
        )
    lines += _wrapped("Intended use: ", card.get("intended_use", "-"))
    lines.append("Known limits:")
    for limit in card.get("known_limits") or ["-"]:
        lines += _wrapped("  - ", limit, indent="    ")
    return "\n".join(lines)


def sagemaker_model_card(card: Mapping[str, Any]) -> dict[str, str]:
    """The card as a SageMaker model package's ``ModelCard`` (``CreateModelPackage``): the
    Model Package Model Card Schema's ``intended_uses``, ``evaluation_details`` (one evaluation
    on the test split: the metrics, calibration and per-mode F1 as number metrics) and
    ``additional_information.caveats_and_recommendations`` (the known limits)."""

    def metric(name: str, value: Any) -> dict[str, Any] | None:
        number = value if isinstance(value, int | float) and not isinstance(value, bool) else None
        return None if number is None else {"name": name, "type": "number", "value": number}

    metrics = card.get("metrics") or {}
    calibration = card.get("calibration") or {}
    modes = card.get("failure_modes") or {}
    groups = {
        "failure (at the decision threshold)": [
            metric(name, metrics.get(key))
            for name, key in (
                ("F1", "f1"),
                ("precision", "precision"),
                ("recall", "recall"),
                ("ROC AUC", "roc_auc"),
                ("PR AUC", "pr_auc"),
                ("expected cost per 1,000 machines", "expected_cost_per_1000"),
            )
        ],
        "calibration": [
            metric(f"{name} {kind}", (calibration.get(name.lower()) or {}).get(kind))
            for name in ("Brier", "ECE")
            for kind in ("raw", "calibrated")
        ],
        "failure modes (F1)": [
            metric(f"{mode.upper()} F1", item.get("f1"))
            for mode, item in (modes.get("per_mode") or {}).items()
        ]
        + [metric("rule modes macro-F1", modes.get("rule_modes_macro_f1"))],
    }
    content = {
        "intended_uses": {"intended_uses": str(card.get("intended_use", ""))[:_SCHEMA_TEXT]},
        "evaluation_details": [
            {
                "name": "test split",
                "evaluation_observation": (
                    f"{metrics.get('failures', '?')} failures in {metrics.get('rows', '?')} "
                    "held-out rows"
                ),
                "metric_groups": [
                    {"name": name, "metric_data": [item for item in items if item is not None]}
                    for name, items in groups.items()
                ],
            }
        ],
        "additional_information": {
            "caveats_and_recommendations": " ".join(card.get("known_limits") or [])[:_SCHEMA_TEXT]
        },
    }
    return {
        "ModelCardContent": json.dumps(content, separators=(",", ":")),
        "ModelCardStatus": SAGEMAKER_CARD_STATUS,
    }
