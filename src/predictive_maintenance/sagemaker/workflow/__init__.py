"""Kedro pipeline -> SageMaker Pipeline: the plan (pure), the compiler (SageMaker SDK v3) and a
local executor of the compiled definition."""
