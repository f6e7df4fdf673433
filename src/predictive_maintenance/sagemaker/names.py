"""SageMaker's rule for resource names: model package groups, endpoints, models, configs."""

from __future__ import annotations

import re
from typing import Final

#: 1-63 letters, digits and hyphens, starting and ending with a letter or digit.
RESOURCE_NAME_PATTERN: Final = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")
