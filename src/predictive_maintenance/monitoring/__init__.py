"""Model monitoring: the data-quality baseline, reading captured traffic, constraints and drift.

The files follow SageMaker Model Monitor's data-quality formats (``statistics.json``,
``constraints.json``, ``constraint_violations.json``), so a baseline made here can be given to a
SageMaker monitoring schedule, and a baseline SageMaker made can be checked against locally.
numpy and pandas only (plotly inside the plot functions): the baseline also runs as a SageMaker
processing step.
"""
