"""Project settings. See https://docs.kedro.org/en/stable/configure/configuration_basics/."""

from kedro.config import OmegaConfigLoader

from predictive_maintenance.hooks import NodeTimingHooks

HOOKS = (NodeTimingHooks(),)

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
}
