"""Project settings. See https://docs.kedro.org/en/stable/configure/configuration_basics/."""

import warnings

from kedro.config import OmegaConfigLoader

from predictive_maintenance.hooks import NodeTimingHooks
from predictive_maintenance.sagemaker.hooks import SageMakerHooks
from predictive_maintenance.tracking.hooks import MlflowTrackingHooks

# Kedro 1.7's OmegaConfigLoader registers its resolvers with OmegaConf.register_new_resolver(),
# which OmegaConf 2.4 deprecates: every command warned two or three times about Kedro's code, not
# ours. Only that warning, and only when it comes from Kedro's config loader, is silenced; drop
# this once Kedro calls register_resolver().
warnings.filterwarnings(
    "ignore",
    message=r"register_new_resolver\(\) is deprecated",
    category=UserWarning,
    module=r"kedro\.config\.omegaconf_config",
)

# SageMakerHooks hands conf/<env>/sagemaker.yml to SageMakerRunner; MlflowTrackingHooks logs
# every run to MLflow as conf/<env>/mlflow.yml says (and lets SageMakerRunner's jobs log into it).
HOOKS = (NodeTimingHooks(), SageMakerHooks(), MlflowTrackingHooks())

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "config_patterns": {
        "sagemaker": ["sagemaker*", "sagemaker*/**"],
        "mlflow": ["mlflow*", "mlflow*/**"],
    },
}
