"""The base of every policy model (camelCase YAML keys, unknown keys refused, frozen, finite),
and the strict number and switch types every block uses.

Its own module so that the policy's parts (``policy.py``, ``behavior_policy.py``) share
one configuration without importing each other. Pure: pydantic only.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Strict
from pydantic.alias_generators import to_camel

# Numbers and switches are taken only as YAML writes them: pydantic's lax mode would read
# `maxReplicas: true` as 1 and `'5'` as 5, so a quoting slip or a yes/no typo would pass.
# Floats accept whole numbers (`averageValue: 50`), never text.
Int = Annotated[int, Strict()]
Number = Annotated[float, Strict()]
Bool = Annotated[bool, Strict()]


class PolicyModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        # `.inf` as a target makes every ratio 0 (any load scales to minReplicas), `.nan`
        # makes every comparison false: no number in a policy may be either.
        allow_inf_nan=False,
    )
