"""The bridge's settings: the ``sagemaker`` configuration (``conf/<env>/sagemaker.yml``).

Read through the project's config loader (``config_patterns["sagemaker"]``) by
:class:`~predictive_maintenance.sagemaker.hooks.SageMakerHooks`, then checked here so that a typo
is an error naming the key rather than a silently ignored setting.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Final

#: Where the settings live, for error messages.
CONFIG_FILE: Final = "conf/<env>/sagemaker.yml"
#: ``node_overrides`` keys of this form select nodes by tag; other keys are node names.
TAG_PREFIX: Final = "tag:"


class SageMakerConfigError(ValueError):
    """The ``sagemaker`` configuration is missing, mistyped or incomplete."""


@dataclass(frozen=True)
class TrainingJobSettings:
    """How one remote node runs: the ``training_job`` block, or it merged with an override."""

    instance_type: str = "ml.m5.xlarge"
    instance_count: int = 1
    volume_size_gb: int = 30
    max_runtime_seconds: int = 3600
    #: Stock SageMaker framework image (``sagemaker.core.image_uris``), unless ``image_uri``.
    framework: str = "xgboost"
    framework_version: str = "3.0-5"
    image_uri: str | None = None
    #: Extra environment variables of the job.
    environment: Mapping[str, str] = field(default_factory=dict)
    #: With ``instance_count`` > 1: the node inputs (data frames) split into parts that
    #: SageMaker shards across the instances (``ShardedByS3Key``); the others are replicated.
    sharded_inputs: tuple[str, ...] = ()
    #: Parts per instance of each sharded input (SageMaker gives an instance about 1/n of them).
    shards_per_instance: int = 1


@dataclass(frozen=True)
class JobEnvironment:
    """What the stock image is and what a job adds to it (the ``job_environment`` block)."""

    #: What the nodes need beyond the image, shipped as wheels at this environment's versions.
    requirements: tuple[str, ...] = ()
    #: What the image already has (``name==version``): left out of the wheels.
    image_packages: tuple[str, ...] = ()
    python_version: str = "3.10"
    platforms: tuple[str, ...] = ("manylinux2014_x86_64",)
    wheel_cache: Path = Path("~/.cache/kedro-sagemaker/wheels")
    #: Versions shipped instead of this environment's (canonical name -> version), for packages
    #: whose installed version does not fit the image (e.g. needs a newer protobuf than its own).
    versions: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class NetworkSettings:
    """Network isolation and VPC of every job (the ``network`` block)."""

    enable_network_isolation: bool = False
    subnets: tuple[str, ...] = ()
    security_group_ids: tuple[str, ...] = ()


#: A SageMaker managed MLflow tracking server's (or serverless MLflow app's) ARN.
MLFLOW_ARN_PATTERN: Final = (
    r"arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:[0-9]{12}:(mlflow-tracking-server|mlflow-app)/"
    r"[A-Za-z0-9][A-Za-z0-9-]{0,255}"
)


@dataclass(frozen=True)
class MlflowSettings:
    """Where exported pipelines track (the ``mlflow`` block)."""

    #: A SageMaker managed MLflow tracking server's ARN; None: exported executions do not track.
    tracking_server_arn: str | None = None
    #: The experiment the executions' runs go to (None: MLflow's default experiment).
    experiment: str | None = None


@dataclass(frozen=True)
class BridgeSettings:
    """Everything in the ``sagemaker`` configuration."""

    region: str | None
    bucket: str
    prefix: str
    execution_role_arn: str
    remote_tags: frozenset[str] = frozenset()
    remote_names: frozenset[str] = frozenset()
    training_job: TrainingJobSettings = TrainingJobSettings()
    node_overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: Directory standing in for S3 with the ``local`` backend; None: S3 (or AWS_ENDPOINT_URL).
    local_store_directory: Path | None = None
    poll_seconds: float = 10.0
    local_poll_seconds: float = 0.5
    job_environment: JobEnvironment = JobEnvironment()
    network: NetworkSettings = NetworkSettings()
    mlflow: MlflowSettings = MlflowSettings()

    def is_remote(self, name: str, tags: Iterable[str]) -> bool:
        """True for nodes that run as training jobs: by name, or by any of their tags."""
        return name in self.remote_names or not self.remote_tags.isdisjoint(tags)

    def job_settings(self, name: str, tags: Iterable[str]) -> TrainingJobSettings:
        """``training_job`` with the node's overrides applied: tags (sorted), then its name."""
        settings = self.training_job
        for tag in sorted(tags):
            override = self.node_overrides.get(f"{TAG_PREFIX}{tag}")
            if override:
                settings = _merge(settings, override, f"node_overrides.{TAG_PREFIX}{tag}")
        if name in self.node_overrides:
            settings = _merge(settings, self.node_overrides[name], f"node_overrides.{name}")
        return settings

    @property
    def s3_root(self) -> str:
        """``s3://bucket/prefix``: every object the bridge writes is under it."""
        return f"s3://{self.bucket}/{self.prefix.strip('/')}".rstrip("/")


def _expect(value: Any, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise SageMakerConfigError(
            f"{CONFIG_FILE}: {where} must be {names}, got {type(value).__name__} {value!r}"
        )
    return value


def _check_keys(block: Mapping[str, Any], allowed: Iterable[str], where: str) -> None:
    unknown = sorted(set(block) - set(allowed))
    if unknown:
        raise SageMakerConfigError(
            f"{CONFIG_FILE}: unknown key(s) {', '.join(unknown)} in {where} "
            f"(known: {', '.join(sorted(allowed))})"
        )


_JOB_TYPES: Final[dict[str, type | tuple[type, ...]]] = {
    "instance_type": str,
    "instance_count": int,
    "volume_size_gb": int,
    "max_runtime_seconds": int,
    "framework": str,
    "framework_version": str,
    "image_uri": (str, type(None)),
    "environment": Mapping,
    "sharded_inputs": (list, tuple),
    "shards_per_instance": int,
}


_AT_LEAST_ONE: Final = frozenset(
    {"instance_count", "volume_size_gb", "max_runtime_seconds", "shards_per_instance"}
)


def _merge(base: TrainingJobSettings, block: Mapping[str, Any], where: str) -> TrainingJobSettings:
    _expect(block, Mapping, where)
    _check_keys(block, (f.name for f in fields(TrainingJobSettings)), where)
    changes: dict[str, Any] = {}
    for key, raw in block.items():
        value = _expect(raw, _JOB_TYPES[key], f"{where}.{key}")
        if key == "environment":
            value = {str(k): _expect(v, str, f"{where}.environment.{k}") for k, v in raw.items()}
        elif key == "sharded_inputs":
            value = _strings(raw, f"{where}.sharded_inputs")
        elif key in _AT_LEAST_ONE and value < 1:
            raise SageMakerConfigError(f"{CONFIG_FILE}: {where}.{key} must be at least 1")
        changes[key] = value
    return replace(base, **changes)


_TOP_LEVEL: Final = (
    "region",
    "bucket",
    "prefix",
    "execution_role_arn",
    "remote_nodes",
    "training_job",
    "node_overrides",
    "local",
    "poll_seconds",
    "pipeline",
    "job_environment",
    "network",
    "mlflow",
)


def _strings(value: Any, where: str) -> tuple[str, ...]:
    _expect(value, (list, tuple), where)
    return tuple(_expect(item, str, f"{where}[]") for item in value)


def _job_environment(block: Any, project_path: Path) -> JobEnvironment:
    _expect(block, Mapping, "job_environment")
    _check_keys(
        block,
        (
            "requirements",
            "image_packages",
            "python_version",
            "platforms",
            "wheel_cache",
            "versions",
        ),
        "job_environment",
    )
    default = JobEnvironment()
    # A string: YAML reads an unquoted 3.10 as the number 3.1.
    python = _expect(
        block.get("python_version", default.python_version), str, "job_environment.python_version"
    )
    if not re.fullmatch(r"3\.\d+", python):
        raise SageMakerConfigError(
            f"{CONFIG_FILE}: job_environment.python_version must be like 3.10, got {python!r}"
        )
    cache = Path(
        _expect(
            block.get("wheel_cache", str(default.wheel_cache)), str, "job_environment.wheel_cache"
        )
    ).expanduser()
    return JobEnvironment(
        requirements=_strings(block.get("requirements") or [], "job_environment.requirements"),
        image_packages=_strings(
            block.get("image_packages") or [], "job_environment.image_packages"
        ),
        python_version=python,
        platforms=_strings(
            block.get("platforms") or list(default.platforms), "job_environment.platforms"
        ),
        wheel_cache=cache if cache.is_absolute() else project_path / cache,
        versions=_versions(block.get("versions") or {}),
    )


def _versions(block: Any) -> dict[str, str]:
    """``job_environment.versions``: package name -> the version to ship (a string)."""
    _expect(block, Mapping, "job_environment.versions")
    versions = {}
    for name, version in block.items():
        where = f"job_environment.versions.{name}"
        text = _expect(version, str, f"{where} (quote it: YAML reads 1.27 as a number)")
        if not re.fullmatch(r"[0-9][0-9A-Za-z.+!-]*", text):
            raise SageMakerConfigError(f"{CONFIG_FILE}: {where} must be a version, got {text!r}")
        versions[re.sub(r"[-_.]+", "-", str(name)).lower()] = text
    return versions


def _network(block: Any) -> NetworkSettings:
    _expect(block, Mapping, "network")
    _check_keys(block, ("enable_network_isolation", "subnets", "security_group_ids"), "network")
    subnets = _strings(block.get("subnets") or [], "network.subnets")
    groups = _strings(block.get("security_group_ids") or [], "network.security_group_ids")
    if bool(subnets) != bool(groups):
        raise SageMakerConfigError(
            f"{CONFIG_FILE}: network.subnets and network.security_group_ids go together (a VPC "
            "configuration needs both)"
        )
    return NetworkSettings(
        enable_network_isolation=_expect(
            block.get("enable_network_isolation", False), bool, "network.enable_network_isolation"
        ),
        subnets=subnets,
        security_group_ids=groups,
    )


def _mlflow(block: Any) -> MlflowSettings:
    _expect(block, Mapping, "mlflow")
    _check_keys(block, ("tracking_server_arn", "experiment"), "mlflow")
    arn = _expect(block.get("tracking_server_arn"), (str, type(None)), "mlflow.tracking_server_arn")
    if arn is not None and not re.fullmatch(MLFLOW_ARN_PATTERN, arn):
        raise SageMakerConfigError(
            f"{CONFIG_FILE}: mlflow.tracking_server_arn {arn!r} is not a SageMaker MLflow ARN "
            "(arn:aws:sagemaker:<region>:<account>:mlflow-tracking-server/<name>, or "
            "...:mlflow-app/<id>); null: exported pipelines do not track"
        )
    experiment = _expect(block.get("experiment"), (str, type(None)), "mlflow.experiment")
    if experiment is not None and not experiment.strip():
        raise SageMakerConfigError(f"{CONFIG_FILE}: mlflow.experiment must not be empty")
    return MlflowSettings(tracking_server_arn=arn or None, experiment=experiment)


def parse_settings(config: Mapping[str, Any], project_path: Path) -> BridgeSettings:
    """Checks the ``sagemaker`` configuration and returns it typed.

    Raises:
        SageMakerConfigError: a key is unknown, missing or of the wrong type.
    """
    _check_keys(config, _TOP_LEVEL, "the top level")
    for required in ("bucket", "execution_role_arn"):
        if not config.get(required):
            raise SageMakerConfigError(f"{CONFIG_FILE}: {required} is required")
    remote = _expect(config.get("remote_nodes") or {}, Mapping, "remote_nodes")
    _check_keys(remote, ("tags", "names"), "remote_nodes")
    overrides = _expect(config.get("node_overrides") or {}, Mapping, "node_overrides")
    local = _expect(config.get("local") or {}, Mapping, "local")
    _check_keys(local, ("store_directory", "poll_seconds"), "local")
    store_directory = local.get("store_directory")
    settings = BridgeSettings(
        region=_expect(config.get("region"), (str, type(None)), "region"),
        bucket=_expect(config["bucket"], str, "bucket"),
        prefix=_expect(config.get("prefix") or "", str, "prefix"),
        execution_role_arn=_expect(config["execution_role_arn"], str, "execution_role_arn"),
        remote_tags=frozenset(_expect(remote.get("tags") or [], list, "remote_nodes.tags")),
        remote_names=frozenset(_expect(remote.get("names") or [], list, "remote_nodes.names")),
        training_job=_merge(
            TrainingJobSettings(), config.get("training_job") or {}, "training_job"
        ),
        node_overrides={str(key): value for key, value in overrides.items()},
        local_store_directory=(
            project_path / _expect(store_directory, str, "local.store_directory")
            if store_directory is not None
            else None
        ),
        poll_seconds=float(_expect(config.get("poll_seconds", 10.0), (int, float), "poll_seconds")),
        local_poll_seconds=float(
            _expect(local.get("poll_seconds", 0.5), (int, float), "local.poll_seconds")
        ),
        job_environment=_job_environment(config.get("job_environment") or {}, project_path),
        network=_network(config.get("network") or {}),
        mlflow=_mlflow(config.get("mlflow") or {}),
    )
    for key, block in settings.node_overrides.items():  # fail now, not at the node
        _merge(settings.training_job, block, f"node_overrides.{key}")
    return settings
