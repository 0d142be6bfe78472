"""Target profiles: each board gets exactly the settings it has."""

import pytest

from edgeseg.errors import ConfigError
from edgeseg.targets import all_targets, get_target


def test_every_profile_names_a_backend_that_exists():
    from edgeseg.runtime.backends import available_backends

    for t in all_targets().values():
        assert t.backend in available_backends() or t.backend in ("litert", "tensorrt"), t.name


def test_only_boards_with_dla_get_dla_cores():
    assert get_target("jetson-orin-nano").dla_cores == 0
    for name in ("jetson-orin-nx", "jetson-agx-orin", "jetson-xavier-nx"):
        assert get_target(name).dla_cores == 2
    for name in ("host-cpu", "android-cpu"):
        assert get_target(name).dla_cores == 0


def test_android_targets_name_their_delegate():
    assert {get_target(f"android-{d}").delegate for d in ("cpu", "gpu", "nnapi")} == {"xnnpack", "gpu", "nnapi"}


def test_unsupported_precision_says_what_is_supported():
    with pytest.raises(ConfigError, match="android-cpu does not support precision 'int4'; it supports: fp32, fp16, int8, int8-dynamic"):
        get_target("android-cpu").check_precision("int4")
