"""What a field annotation of the policy model holds, for code that walks the model.

Used by the label grammar (``label_paths``, ``label_export``) and by the messages that
suggest a field name (``messages``): one reading of ``X | None``, ``tuple[X, ...]`` and
``Annotated[X, ...]`` for both.
"""

from __future__ import annotations

import types
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel


def as_model(annotation: Any) -> type[BaseModel] | None:
    """The BaseModel inside ``X | None``, ``tuple[X, ...]``, ``Annotated[X, ...]``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType, tuple, list, Annotated):
        for arg in get_args(annotation):
            model = as_model(arg)
            if model is not None:
                return model
    return None
