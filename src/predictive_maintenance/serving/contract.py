"""The SageMaker inference contract in constants: the one place for them.

Kept free of heavy imports (the standard library and :mod:`predictive_maintenance.schema` only):
the handlers (:mod:`.inference`, inside the SageMaker container), the local server, the HTTP API
and the command line all read them from here.
"""

from __future__ import annotations

from typing import Final

from predictive_maintenance.schema import RAW_TO_COLUMN, READING_COLUMNS

CSV_CONTENT_TYPE: Final = "text/csv"
JSON_CONTENT_TYPE: Final = "application/json"
#: Request and response media types, in order of preference.
SUPPORTED_CONTENT_TYPES: Final = (CSV_CONTENT_TYPE, JSON_CONTENT_TYPE)
#: Answer to ``Accept: */*`` (or none) when the request type does not say: the container's default.
DEFAULT_ACCEPT: Final = JSON_CONTENT_TYPE
#: Charsets a request may declare; the body is decoded as UTF-8 (ASCII is a subset).
SUPPORTED_CHARSETS: Final = ("utf-8", "utf8", "us-ascii", "ascii")
#: SageMaker real-time endpoints refuse request payloads above 6 MB.
MAX_PAYLOAD_BYTES: Final = 6 * 1024 * 1024
#: File names inside the model directory (the extracted ``model.tar.gz``).
MODEL_FILE: Final = "xgboost-model"  # the name the stock SageMaker XGBoost container loads
SPEC_FILE: Final = "model_spec.json"
#: Optional, beside them: the failure-mode booster (UBJ; its sha256 in the spec's
#: ``failure_modes.model_sha256``) and the model card (its sha256 in ``model_card_sha256``).
FAILURE_MODE_MODEL_FILE: Final = "failure-mode-model"
MODEL_CARD_FILE: Final = "model_card.json"
CODE_DIR: Final = "code"
PROGRAM_FILE: Final = "inference.py"  # SAGEMAKER_PROGRAM
#: Response header naming the registry version of the model that answered.
MODEL_VERSION_HEADER: Final = "X-Model-Version"
#: Environment variable through which a deployment tells the container its registry version
#: (SageMaker's Model Environment; the local server reads the version from the endpoint state).
MODEL_VERSION_ENV: Final = "MODEL_VERSION"
#: The data set's names of the fields of a request row, in the workshop's order (the endpoint's
#: CSV has no header line; the API also takes files with one, see :mod:`.requests`).
CSV_FIELDS: Final = tuple(
    next(raw for raw, name in RAW_TO_COLUMN.items() if name == column) for column in READING_COLUMNS
)
#: SageMaker Runtime's request header for InvokeEndpoint's ``InferenceId`` (1-64 printable
#: characters): data capture records it as ``eventMetadata.inferenceId``, the id a client later
#: reports ground truth under (AWS does not tell the client the capture's own eventId).
INFERENCE_ID_HEADER: Final = "X-Amzn-SageMaker-Inference-Id"
INFERENCE_ID_MAX_LENGTH: Final = 64
#: The local endpoint's route that reports the data-capture counters (not part of SageMaker's
#: contract), and the answer header naming the event a captured request was recorded under.
CAPTURE_STATS_PATH: Final = "/capture-stats"
EVENT_ID_HEADER: Final = "x-capture-event-id"
#: Key of the list of readings in a JSON request.
JSON_INSTANCES_KEY: Final = "instances"
#: The opt-in to explanations: a JSON request's key (``true``/``false``; the portable way, as
#: SageMaker Runtime's InvokeEndpoint carries no query string) or the local endpoint's and the
#: API's query parameter (``?explain=true``). The answer's key holding them.
EXPLAIN_KEY: Final = "explain"
EXPLANATIONS_KEY: Final = "explanations"
#: An explained answer's keys beyond the SHAP values: each explanation's calibrated
#: ``probability`` and likely ``failure_mode``, and the answer's ``model_card``.
PROBABILITY_KEY: Final = "probability"
FAILURE_MODE_KEY: Final = "failure_mode"
MODEL_CARD_KEY: Final = "model_card"
#: Readings one request may ask to explain: each explanation is about 1.8 kB of JSON (with its
#: failure mode), the card 3 kB more per answer, and the answer must fit SageMaker's (and
#: Lambda's) 6 MB response; TreeSHAP and the mode model also cost ~0.1 ms a row.
MAX_EXPLAINED_ROWS: Final = 1_000

#: Routes of a SageMaker inference container, and of SageMaker Runtime's InvokeEndpoint
#: (``POST /endpoints/{EndpointName}/invocations``).
PING_PATH: Final = "/ping"
INVOCATIONS_PATH: Final = "/invocations"
RUNTIME_PREFIX: Final = "/endpoints/"
RUNTIME_SUFFIX: Final = "/invocations"

#: Headers on every response of the endpoint and the API, errors included: no MIME sniffing, no
#: framing by other sites, no referrer. (The web page gets :data:`PAGE_SECURITY_POLICY` instead of
#: the bare ``frame-ancestors`` policy.)
SECURITY_HEADERS: Final = (
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("content-security-policy", "frame-ancestors 'none'"),
    ("referrer-policy", "no-referrer"),
)
#: The web client's Content-Security-Policy: its own script, style and API calls, nothing else.
PAGE_SECURITY_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
