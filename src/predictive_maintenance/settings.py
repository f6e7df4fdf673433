"""Project settings. See https://docs.kedro.org/en/stable/configure/configuration_basics/."""

from kedro.config import OmegaConfigLoader

from predictive_maintenance.hooks import NodeTimingHooks
from predictive_maintenance.sagemaker.hooks import SageMakerHooks

# SageMakerHooks hands conf/<env>/sagemaker.yml to SageMakerRunner.
HOOKS = (NodeTimingHooks(), SageMakerHooks())

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "config_patterns": {"sagemaker": ["sagemaker*", "sagemaker*/**"]},
}
