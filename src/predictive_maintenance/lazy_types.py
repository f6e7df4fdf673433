"""Annotations of classes from libraries that are slow to import (XGBoost, plotly).

Every ``kedro run`` imports every node module, and Kedro reads every node's annotations
(``typing.get_type_hints``) before the first node runs: ``xgboost.Booster`` in an annotation would
cost about two seconds of start-up (XGBoost imports scikit-learn), ``plotly.graph_objects.Figure``
a third of a second. Type checkers see the real classes; at run time the names stand for ``Any``.
A node that uses the library imports it itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from plotly.graph_objects import Figure
    from xgboost import Booster
else:
    Booster = Any
    Figure = Any

__all__ = ["Booster", "Figure"]
