"""One error tree: every program's exception classes root in autoscaler.errors.AutoscalerError."""

from __future__ import annotations

import errno

import pytest

from autoscaler.errors import AutoscalerError, PermanentError
from autoscaler.settings import SettingsError
from ipvs_agent.model import IpvsFormatError
from ipvs_agent.netlink_wire import FamilyNotFoundError, NetlinkError
from ipvs_agent.netns import IpvsUnavailableError
from swarm_lab.errors import LabError


@pytest.mark.parametrize(
    ("error", "builtin"),
    [
        (SettingsError, ValueError),
        (IpvsFormatError, ValueError),
        (NetlinkError, OSError),
        (FamilyNotFoundError, OSError),
        (IpvsUnavailableError, OSError),
        (LabError, RuntimeError),
    ],
)
def test_each_error_derives_from_the_base_and_keeps_its_builtin(
    error: type[Exception], builtin: type[Exception]
) -> None:
    assert issubclass(error, AutoscalerError)
    assert issubclass(error, builtin)  # handlers written against the builtin still catch it


def test_settings_errors_are_permanent() -> None:
    assert issubclass(SettingsError, PermanentError)


def test_netlink_error_keeps_oserror_fields() -> None:
    exc = NetlinkError(errno.ENOENT, "netlink request failed")
    assert (exc.errno, exc.strerror) == (errno.ENOENT, "netlink request failed")
