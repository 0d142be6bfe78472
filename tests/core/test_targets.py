"""Target profiles: each board gets exactly the settings it has."""

import pytest

from edgeseg.errors import ConfigError
from edgeseg.targets import all_targets, get_target
from tests.constants import ANDROID_CPU, HOST_CPU


def test_every_profile_names_a_backend_that_exists():
    """Each target's backend is one a registered format runs (was: any LiteRT or TensorRT target passed)."""
    from edgeseg.formats import all_formats

    registered = {f.backend for f in all_formats().values()}
    assert {t.name: t.backend for t in all_targets().values() if t.backend not in registered} == {}


def test_only_boards_with_dla_get_dla_cores():
    assert get_target("jetson-orin-nano").tensorrt_options().dla_cores == 0
    for name in ("jetson-orin-nx", "jetson-agx-orin", "jetson-xavier-nx"):
        assert get_target(name).tensorrt_options().dla_cores == 2


def test_backend_sections_belong_only_to_their_backend():
    for t in all_targets().values():
        assert (t.tensorrt is not None) == (t.backend == "tensorrt"), t.name
        assert (t.litert is not None) == (t.backend == "litert"), t.name
    with pytest.raises(ConfigError, match="host-cpu is not a TensorRT target"):
        get_target(HOST_CPU).tensorrt_options()


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
    with pytest.raises(ConfigError,
                       match="android-cpu does not support precision 'int4'; it supports: fp32, fp16, int8, "
                             "int8-dynamic"):
        get_target(ANDROID_CPU).check_precision("int4")


def test_jetson_profiles_carry_the_jetpack_software_matrix():
    matrix = {(r.release, r.python, r.tensorrt) for r in get_target("jetson-orin-nx").tensorrt_options().jetpack}
    assert matrix == {("5.1", "3.8", "8.5"), ("6.0", "3.10", "8.6"), ("6.1", "3.10", "10.3"), ("6.2", "3.10", "10.3")}
    for name in ("jetson-orin-nano", "jetson-agx-orin"):
        assert get_target(name).tensorrt_options().jetpack == get_target("jetson-orin-nx").tensorrt_options().jetpack
    # JetPack 6 dropped Xavier
    assert [r.release for r in get_target("jetson-xavier-nx").tensorrt_options().jetpack] == ["5.1"]
    # the ONNX parser check runs on each TensorRT those releases ship, once each
    assert get_target("jetson-orin-nx").tensorrt_options().versions == ("8.5", "8.6", "10.3")


def test_the_edgeseg_runtime_needs_python_3_10_so_jetpack_5_builds_with_trtexec_only():
    releases = {r.release: r for r in get_target("jetson-agx-orin").tensorrt_options().jetpack}
    assert not releases["5.1"].runtime_supported
    assert releases["6.0"].runtime_supported and releases["6.2"].runtime_supported
    assert get_target("jetson-agx-orin").to_dict()["tensorrt"]["jetpack"][0] == {
        "release": "5.1", "python": "3.8", "tensorrt": "8.5", "edgeseg_runtime": False}


@pytest.mark.parametrize(("entry", "message"), [
    ("{release: '6.0', python: 3.10, tensorrt: '8.6'}", "python 3.1 must be a quoted MAJOR.MINOR string"),
    ("{release: '6.0', python: '3.10'}", "needs exactly release, python and tensorrt"),
    ("{release: '6.0', python: 'three', tensorrt: '8.6'}", "python 'three' must be a quoted MAJOR.MINOR"),
])
def test_a_bad_jetpack_entry_is_refused(tmp_path, entry, message):
    from edgeseg.targets import _load

    (tmp_path / "board.yaml").write_text(
        "name: board\ndescription: d\nbackend: tensorrt\nformat: tensorrt-bundle\nprecisions: [fp16]\n"
        f"default_resolution: 320\nthreads: 1\ntensorrt:\n  jetpack:\n    - {entry}\n")
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path / "board.yaml")
