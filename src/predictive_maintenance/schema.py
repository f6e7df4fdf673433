"""Names and orders of every column the project touches: the one place for these facts.

The raw AI4I 2020 file uses human headers with units in brackets; XGBoost rejects ``[``/``]`` in
feature names and APIs want identifiers, so right after parsing the columns get snake_case names.
The reading names double as the field names of the serving JSON payload.
"""

from __future__ import annotations

from typing import Final

#: Header of the official CSV (file order) -> project column name.
RAW_TO_COLUMN: Final = {
    "UDI": "udi",
    "Product ID": "product_id",
    "Type": "type",
    "Air temperature [K]": "air_temperature_k",
    "Process temperature [K]": "process_temperature_k",
    "Rotational speed [rpm]": "rotational_speed_rpm",
    "Torque [Nm]": "torque_nm",
    "Tool wear [min]": "tool_wear_min",
    "Machine failure": "machine_failure",
    "TWF": "twf",
    "HDF": "hdf",
    "PWF": "pwf",
    "OSF": "osf",
    "RNF": "rnf",
}

#: Columns of the official CSV, in file order.
RAW_COLUMNS: Final = tuple(RAW_TO_COLUMN)

ID_COLUMNS: Final = ("udi", "product_id")

#: The six readings a client sends for one prediction, in the workshop's CSV order
#: (Type, air temperature, process temperature, rotational speed, torque, tool wear).
READING_COLUMNS: Final = (
    "type",
    "air_temperature_k",
    "process_temperature_k",
    "rotational_speed_rpm",
    "torque_nm",
    "tool_wear_min",
)

TARGET_COLUMN: Final = "machine_failure"

#: Failure-mode flags: known only after the fact, so they are labels, never features.
FAILURE_MODE_COLUMNS: Final = ("twf", "hdf", "pwf", "osf", "rnf")

LABEL_COLUMNS: Final = (TARGET_COLUMN, *FAILURE_MODE_COLUMNS)

#: Product quality variants (low, medium, high), in their natural order.
PRODUCT_TYPES: Final = ("L", "M", "H")

#: Physically plausible ranges (inclusive) of the numeric readings: a factory floor, a machine tool.
#: The data set itself spans far less (e.g. air 295-305 K); these bounds reject unit mistakes
#: (Celsius for Kelvin, rad/s for rpm) and sensor garbage, not unusual but real readings. Training
#: data validation and serving input validation both use them.
READING_RANGES: Final = {
    "air_temperature_k": (250.0, 350.0),
    "process_temperature_k": (250.0, 400.0),
    "rotational_speed_rpm": (1.0, 10_000.0),
    "torque_nm": (0.0, 500.0),
    "tool_wear_min": (0.0, 1_000.0),
}
