"""Target profiles: each board gets exactly the settings it has."""

import pytest

from edgeseg.errors import ConfigError
from edgeseg.targets import all_targets, get_target


def test_every_profile_names_a_backend_that_exists():
    from edgeseg.runtime.backends import available_backends

    for t in all_targets().values():
        assert t.backend in available_backends() or t.backend in ("litert", "tensorrt"), t.name


def test_only_boards_with_dla_get_dla_cores():
    assert get_target("jetson-orin-nano").tensorrt_options().dla_cores == 0
    for name in ("jetson-orin-nx", "jetson-agx-orin", "jetson-xavier-nx"):
        assert get_target(name).tensorrt_options().dla_cores == 2


def test_backend_sections_belong_only_to_their_backend():
    for t in all_targets().values():
        assert (t.tensorrt is not None) == (t.backend == "tensorrt"), t.name
        assert (t.litert is not None) == (t.backend == "litert"), t.name
    with pytest.raises(ConfigError, match="host-cpu is not a TensorRT target"):
        get_target("host-cpu").tensorrt_options()


def test_a_section_of_another_backend_is_refused(tmp_path):
    from edgeseg.targets import _load

    (tmp_path / "phone.yaml").write_text(
        "name: phone\ndescription: d\nbackend: litert\nformat: tflite\nprecisions: [fp32]\ndefault_resolution: 320\n"
        "threads: 1\nlitert: {delegate: xnnpack}\ntensorrt: {versions: ['10.3']}\n")
    with pytest.raises(ConfigError, match="'tensorrt:' section belongs to tensorrt targets, not to backend litert"):
        _load(tmp_path / "phone.yaml")


def test_host_proxy_is_profile_data():
    assert {n for n, t in all_targets().items() if t.host_proxy} == {"android-cpu", "android-gpu", "android-nnapi"}


def test_android_targets_name_their_delegate():
    assert {get_target(f"android-{d}").litert.delegate for d in ("cpu", "gpu", "nnapi")} == {"xnnpack", "gpu", "nnapi"}


def test_unsupported_precision_says_what_is_supported():
    with pytest.raises(ConfigError, match="android-cpu does not support precision 'int4'; it supports: fp32, fp16, int8, int8-dynamic"):
        get_target("android-cpu").check_precision("int4")
