"""The base of every policy model: camelCase YAML keys, unknown keys refused, frozen.

Its own module so that the policy's parts (``policy.py``, ``behavior_policy.py``) share
one configuration without importing each other. Pure: pydantic only.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class PolicyModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )
