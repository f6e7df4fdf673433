"""Open file formats for the values a remote node takes and returns, never Python objects.

Each value crossing the job boundary is written by the first codec that accepts its type and read
back by the codec named in the job's manifest: data frames as Parquet, XGBoost boosters in
XGBoost's own UBJ format, Plotly figures in Plotly's JSON, numpy arrays as ``.npy`` without
pickled objects, bytes as they are, and JSON for plain data (only if it survives a JSON round
trip unchanged). The runner uses this module on the submitting side and the entry script inside
the container, so it imports nothing beyond the standard library until a codec needs pandas,
numpy, XGBoost or Plotly.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final


class CodecError(TypeError):
    """A value has no open-format codec, or a file cannot be read back as its codec says."""


@dataclass(frozen=True)
class Codec:
    """How one kind of value is written to and read from a file."""

    name: str
    suffix: str
    content_type: str
    accepts: Callable[[Any], bool]
    write: Callable[[Any, Path], None]
    read: Callable[[Path], Any]


def _module_type(module: str, *qualnames: str) -> tuple[type, ...]:
    """Types from ``module`` if something already imported it (else no value can be one)."""
    loaded = sys.modules.get(module)
    if loaded is None:
        return ()
    types = []
    for qualname in qualnames:
        obj: Any = loaded
        for part in qualname.split("."):
            obj = getattr(obj, part, None)
        if isinstance(obj, type):
            types.append(obj)
    return tuple(types)


def _is_data_frame(value: Any) -> bool:
    return isinstance(value, _module_type("pandas", "DataFrame"))


def _write_parquet(value: Any, path: Path) -> None:
    value.to_parquet(path)


def _read_parquet(path: Path) -> Any:
    import pandas as pd

    return pd.read_parquet(path)


def _is_booster(value: Any) -> bool:
    return isinstance(value, _module_type("xgboost", "Booster"))


def _write_booster(value: Any, path: Path) -> None:
    value.save_model(str(path))


def _read_booster(path: Path) -> Any:
    import xgboost as xgb

    booster = xgb.Booster()
    booster.load_model(str(path))
    return booster


def _is_figure(value: Any) -> bool:
    return isinstance(value, _module_type("plotly.basedatatypes", "BaseFigure"))


def _write_figure(value: Any, path: Path) -> None:
    import plotly.io

    plotly.io.write_json(value, str(path))


def _read_figure(path: Path) -> Any:
    import plotly.io

    return plotly.io.read_json(str(path))


def _is_plain_array(value: Any) -> bool:
    return isinstance(value, _module_type("numpy", "ndarray")) and not value.dtype.hasobject


def _write_npy(value: Any, path: Path) -> None:
    import numpy as np

    np.save(path, value, allow_pickle=False)


def _read_npy(path: Path) -> Any:
    import numpy as np

    return np.load(path, allow_pickle=False)


def _is_bytes(value: Any) -> bool:
    return isinstance(value, (bytes, bytearray))


def _write_bytes(value: Any, path: Path) -> None:
    path.write_bytes(bytes(value))


def _read_bytes(path: Path) -> Any:
    return path.read_bytes()


def is_plain_json(value: Any) -> bool:
    """True if ``value`` is JSON data that reads back equal (no tuples, NaN or odd key types)."""
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return json.loads(text) == value


def _write_json(value: Any, path: Path) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=True, allow_nan=False) + "\n")


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text())


#: In order of preference: the first codec that accepts a value writes it.
CODECS: Final[tuple[Codec, ...]] = (
    Codec(
        "parquet",
        ".parquet",
        "application/x-parquet",
        _is_data_frame,
        _write_parquet,
        _read_parquet,
    ),
    Codec(
        "xgboost-ubj",
        ".ubj",
        "application/octet-stream",
        _is_booster,
        _write_booster,
        _read_booster,
    ),
    Codec("plotly-json", ".json", "application/json", _is_figure, _write_figure, _read_figure),
    Codec("npy", ".npy", "application/x-npy", _is_plain_array, _write_npy, _read_npy),
    Codec("bytes", ".bin", "application/octet-stream", _is_bytes, _write_bytes, _read_bytes),
    Codec("json", ".json", "application/json", is_plain_json, _write_json, _read_json),
)
_BY_NAME: Final = {codec.name: codec for codec in CODECS}


def codec_for(value: Any, what: str) -> Codec:
    """The codec that writes ``value``; ``what`` names the value in the error otherwise."""
    for codec in CODECS:
        if codec.accepts(value):
            return codec
    kinds = ", ".join(codec.name for codec in CODECS)
    raise CodecError(
        f"{what} is a {type(value).__module__}.{type(value).__qualname__}, which cannot cross "
        f"the job boundary in an open format (supported: {kinds}; JSON only if it reads back "
        "unchanged). Return a pandas DataFrame, an XGBoost Booster, a Plotly figure, a numpy "
        "array, bytes or plain JSON data from nodes that run as jobs."
    )


def codec_named(name: str) -> Codec:
    """The codec a manifest names."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise CodecError(f"unknown codec {name!r} (known: {', '.join(_BY_NAME)})") from None


def write_value(value: Any, directory: Path, stem: str, what: str) -> tuple[Codec, Path]:
    """Writes ``value`` as ``directory/stem<suffix>`` with its codec; returns both."""
    codec = codec_for(value, what)
    path = directory / f"{stem}{codec.suffix}"
    try:
        codec.write(value, path)
    except Exception as error:  # every writer has its own exception types
        raise CodecError(f"{what}: cannot write it as {codec.name}: {error}") from error
    return codec, path


def read_value(codec_name: str, path: Path, what: str) -> Any:
    """Reads a value written by :func:`write_value`; ``what`` names it in errors."""
    codec = codec_named(codec_name)
    try:
        return codec.read(path)
    except CodecError:
        raise
    except Exception as error:  # every reader has its own exception types
        raise CodecError(f"{what}: cannot read {path.name} as {codec.name}: {error}") from error
