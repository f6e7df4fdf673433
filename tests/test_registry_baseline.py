"""The data-quality baseline registered with a model version: local registry, node and CLI.

The baseline files are Model Monitor's statistics.json and constraints.json; the ones below are
small but of that shape (the monitoring helper's node makes the real ones from ``train``). The
other baseline tests (SageMaker registry, endpoint monitoring) import them from here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from click.testing import Result

from predictive_maintenance.integrity import ChecksumMismatchError, sha256_hex
from predictive_maintenance.pipelines.deployment.nodes import baseline_files, register_model
from predictive_maintenance.registry import LocalModelRegistryDataset
from predictive_maintenance.registry.local import LocalModelRegistry
from predictive_maintenance.schema import READING_COLUMNS
from tests.support.cli import invoke
from tests.support.project import copy_project
from tests.test_registry_integrity import overwrite, version_json_path

GROUP = "predictive-maintenance"


def _statistics(mean: float) -> dict:
    numeric = {
        "common": {"num_present": 10, "num_missing": 0},
        "mean": mean,
        "sum": mean * 10,
        "std_dev": 1.0,
        "min": mean - 2,
        "max": mean + 2,
    }
    string = {
        "common": {"num_present": 10, "num_missing": 0},
        "distinct_count": 3,
        "distribution": {"categorical": {"buckets": [{"value": "L", "count": 10}]}},
    }
    return {
        "version": 0.0,
        "dataset": {"item_count": 10},
        "features": [
            {"name": name, "inferred_type": "String", "string_statistics": string}
            if name == "type"
            else {"name": name, "inferred_type": "Fractional", "numerical_statistics": numeric}
            for name in READING_COLUMNS
        ],
    }


CONSTRAINTS = {
    "version": 0.0,
    "features": [
        {"name": name, "inferred_type": "String" if name == "type" else "Fractional"}
        for name in READING_COLUMNS
    ],
    "monitoring_config": {"evaluate_constraints": "Enabled", "emit_metrics": "Enabled"},
}
STATISTICS = _statistics(300.0)


def baseline(mean: float = 300.0) -> dict[str, bytes]:
    """The registry's baseline files (what ``register_model`` hands the registry)."""
    return baseline_files(_statistics(mean), CONSTRAINTS)


def _register(registry: LocalModelRegistry, archive: bytes = b"archive", **changes):
    return registry.register(
        GROUP, archive, metrics={}, lineage={}, baseline=changes.pop("files", baseline())
    )


@pytest.fixture
def registry(tmp_path: Path) -> LocalModelRegistry:
    return LocalModelRegistry(tmp_path / "registry")


def test_the_baseline_is_stored_read_only_with_its_sha256_in_version_json(registry):
    files = baseline()
    version = _register(registry, files=files)

    statistics = registry.baseline_path(GROUP, 1, "statistics")
    record = json.loads(version_json_path(registry, 1).read_text())["baseline"]
    assert statistics.read_bytes() == files["statistics"]
    assert not statistics.stat().st_mode & 0o222
    assert record["constraints"] == {
        "file": "baseline/constraints.json",
        "sha256": sha256_hex(files["constraints"]),
        "size": len(files["constraints"]),
    }
    assert version.baseline == record
    assert registry.read_baseline(GROUP, 1) == files
    assert json.loads(files["statistics"]) == STATISTICS


def test_the_dataset_registers_the_baseline_and_lists_where_its_files_are(registry):
    dataset = LocalModelRegistryDataset(root=str(registry.root), group=GROUP)

    dataset.save({"archive": b"archive", "baseline": baseline()})
    (version,) = dataset.load()["versions"]

    assert version["baseline"]["statistics"]["uri"] == str(
        registry.baseline_path(GROUP, 1, "statistics")
    )
    assert version["baseline"]["statistics"]["sha256"] == sha256_hex(baseline()["statistics"])


def test_a_version_without_baseline_has_none(registry):
    registry.register(GROUP, b"archive", metrics={}, lineage={})

    assert registry.get(GROUP, 1).baseline == {}
    assert registry.read_baseline(GROUP, 1) == {}
    assert registry.integrity(GROUP).baselines == {}


def test_a_changed_baseline_file_is_detected_and_restoring_it_heals(registry):
    files = baseline()
    _register(registry, files=files)
    path = registry.baseline_path(GROUP, 1, "constraints")

    overwrite(path, files["constraints"].replace(b"Enabled", b"Disabled"))

    with pytest.raises(ChecksumMismatchError, match="baseline changed after registration"):
        registry.read_baseline(GROUP, 1)
    assert "constraints.json: sha256 is" in registry.integrity(GROUP).baselines[1]
    overwrite(path, files["constraints"])
    assert registry.integrity(GROUP).baselines == {}


def test_rewriting_the_recorded_baseline_sha256_is_caught_by_the_ledger(registry):
    _register(registry)
    forged = baseline(mean=310.0)
    overwrite(registry.baseline_path(GROUP, 1, "statistics"), forged["statistics"])
    record = json.loads(version_json_path(registry, 1).read_text())
    record["baseline"]["statistics"]["sha256"] = sha256_hex(forged["statistics"])
    record["baseline"]["statistics"]["size"] = len(forged["statistics"])
    overwrite(version_json_path(registry, 1), json.dumps(record, indent=2).encode())

    with pytest.raises(ChecksumMismatchError, match="edited after registration"):
        registry.read_baseline(GROUP, 1)
    assert 1 in registry.integrity(GROUP).metadata


def test_an_unchanged_archive_with_a_new_baseline_is_a_new_version(registry):
    first, same = registry.register_if_changed(
        GROUP, b"archive", metrics={}, lineage={}, baseline=baseline()
    )
    again, registered_again = registry.register_if_changed(
        GROUP, b"archive", metrics={}, lineage={}, baseline=baseline()
    )
    other, registered_other = registry.register_if_changed(
        GROUP, b"archive", metrics={}, lineage={}, baseline=baseline(mean=301.0)
    )

    assert (first.version, same) == (1, True)
    assert (again.version, registered_again) == (1, False)
    assert (other.version, registered_other) == (2, True)


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"statistics": b"{}"}, "exactly the parts"),
        ({"statistics": b"not json", "constraints": b"{}"}, "baseline statistics is not JSON"),
        ({"statistics": b"{}", "constraints": b'{"features": []}'}, "needs a 'features' list"),
    ],
)
def test_a_malformed_baseline_is_refused_before_anything_is_written(registry, files, message):
    with pytest.raises(ValueError, match=message):
        registry.register(GROUP, b"archive", metrics={}, lineage={}, baseline=files)

    assert not (registry.root / GROUP / "versions").exists() or not any(
        (registry.root / GROUP / "versions").iterdir()
    )


def test_register_model_passes_the_baseline_and_checks_it():
    spec = {
        "training_data": {"raw_sha256": "ab" * 32},
        "model_sha256": "cd" * 32,
        "decision_threshold": 0.5,
        "parameters": {},
        "library_versions": {},
    }
    registration = {"approval_status": "PendingManualApproval"}
    request = register_model(
        b"archive",
        spec,
        {},
        {"checks": []},
        registration,
        baseline_statistics=STATISTICS,
        baseline_constraints=CONSTRAINTS,
    )
    other = {**CONSTRAINTS, "features": CONSTRAINTS["features"][:-1]}

    assert request["baseline"] == baseline()
    with pytest.raises(ValueError, match="baseline_statistics has the features"):
        register_model(
            b"a",
            spec,
            {},
            {"checks": []},
            registration,
            baseline_statistics=STATISTICS,
            baseline_constraints=other,
        )
    with pytest.raises(ValueError, match="baseline_constraints is not a Model Monitor"):
        register_model(
            b"a",
            spec,
            {},
            {"checks": []},
            registration,
            baseline_statistics=STATISTICS,
            baseline_constraints={"features": "no"},
        )


# ---- kedro model show / approve ---------------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path) -> Path:
    project = copy_project(tmp_path / "project")
    path = project / "conf" / "base" / "parameters_deployment.yml"
    parameters = yaml.safe_load(path.read_text())
    parameters["model_registry"] = {"root": "data/10_model_registry", "group": GROUP}
    path.write_text(yaml.safe_dump(parameters))
    return project


@pytest.fixture
def kedro(project: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    def run(*args: str) -> Result:
        return invoke(project, monkeypatch, *args, catch_exceptions=True)

    return run


def test_show_lists_the_baseline_and_approve_refuses_a_changed_one(kedro, project: Path):
    registry = LocalModelRegistry(project / "data" / "10_model_registry")
    files = baseline()
    _register(registry, files=files)

    shown = kedro("model", "show", "1")
    overwrite(registry.baseline_path(GROUP, 1, "statistics"), b'{"features": []}\n')
    tampered = kedro("model", "show", "1")
    approve = kedro("model", "approve", "1")
    listing = kedro("model", "list")

    assert shown.exit_code == 0, shown.output
    statistics = Path("data/10_model_registry") / GROUP / "versions/1/baseline/statistics.json"
    assert f"statistics {statistics} (sha256 {sha256_hex(files['statistics'])})" in shown.stdout
    assert "Baseline check:      sha256 verified" in shown.stdout
    assert tampered.exit_code == 1
    assert "Baseline check:      FAILED (CHANGED)" in tampered.stdout
    assert "baseline changed after registration" in tampered.stderr
    assert approve.exit_code == 1
    assert "refusing to approve version 1" in approve.stderr
    assert registry.get(GROUP, 1).approval_status == "PendingManualApproval"
    assert listing.exit_code == 0, listing.output
    assert "Warning: version 1's baseline:" in listing.stderr
