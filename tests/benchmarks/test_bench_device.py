"""`edgeseg bench --device ssh://…` against a real OpenSSH server on 127.0.0.1, started here with its own
host key and a key made for the test; the device at the far end is the device install (conftest's
`device_venv`: edgeseg[onnxruntime,litert], no torch), so every number of a device row comes from there.

The ssh client is pointed at the test's own config (`--ssh-config`, ssh -F): the test's key, a known_hosts
holding the test server's host key, strict host key checking.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from edgeseg.benchmarks.remote_ssh import parse_device
from edgeseg.cli import main
from edgeseg.errors import ConfigError
from tests.constants import ANDROID_CPU, BENCH_REPORT, BENCH_RESULTS, FORMAT_RESOLUTION, HOST_CPU

SSHD = shutil.which("sshd") or ("/usr/sbin/sshd" if Path("/usr/sbin/sshd").is_file() else None)
needs_sshd = pytest.mark.skipif(SSHD is None or shutil.which("ssh-keygen") is None or shutil.which("scp") is None,
                                reason="needs OpenSSH's sshd, ssh, scp and ssh-keygen "
                                       "(apt-get install openssh-server openssh-client; .ci/run installs them)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _descendants(pid: int) -> list[int]:
    """Every process below `pid` (read from /proc), deepest last."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class SshServer:
    """sshd on 127.0.0.1:port, loopback only, its host key and authorized key in `root`."""

    def __init__(self, root: Path) -> None:
        self.root, self.port, self.process = root, _free_port(), None
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / "host_key")], check=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / "client_key")], check=True)
        shutil.copy(root / "client_key.pub", root / "authorized_keys")
        (root / "sshd_config").write_text(
            f"ListenAddress 127.0.0.1\nHostKey {root / 'host_key'}\nAuthorizedKeysFile {root / 'authorized_keys'}\n"
            "PubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
            f"StrictModes no\nPermitRootLogin prohibit-password\nPidFile {root / 'sshd.pid'}\n"
            "Subsystem sftp internal-sftp\nLogLevel ERROR\n")
        host_key = (root / "host_key.pub").read_text().split()
        (root / "known_hosts").write_text(f"[127.0.0.1]:{self.port} {host_key[0]} {host_key[1]}\n")
        self.client_config = root / "ssh_config"
        self.client_config.write_text(
            f"Host 127.0.0.1\n  IdentityFile {root / 'client_key'}\n  IdentitiesOnly yes\n"
            f"  UserKnownHostsFile {root / 'known_hosts'}\n  StrictHostKeyChecking yes\n  LogLevel ERROR\n")

    def start(self) -> None:
        self.process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.root / "sshd_config"), "-p", str(self.port)],
                                        stderr=open(self.root / "sshd.log", "a"))  # noqa: SIM115 - lives with sshd
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"sshd exited: {(self.root / 'sshd.log').read_text()[-500:]}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.1)
        pytest.fail("sshd did not listen within 20 s")

    def kill(self) -> None:
        """The server and every session it runs, at once: the connection is lost mid-command."""
        if self.process is None:
            return
        victims = [self.process.pid, *_descendants(self.process.pid)]
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):  # gone by itself meanwhile
                os.kill(pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self.process = None

    def url(self, venv: str | Path) -> str:
        return f"ssh://{getpass.getuser()}@127.0.0.1:{self.port}{venv}"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if SSHD is None:
        pytest.skip("needs OpenSSH's sshd (apt-get install openssh-server)")
    if not Path("/run/sshd").is_dir():  # sshd's privilege-separation folder, made by its service at boot
        if os.geteuid() != 0:
            pytest.skip("sshd needs /run/sshd, which is missing and cannot be made without root")
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    root = tmp_path_factory.mktemp("sshd")
    root.chmod(0o700)
    server = SshServer(root)
    server.start()
    yield server
    server.kill()


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("device-cache")


def _bench(*extra: str, data: Path, cache: Path, out: Path) -> list[str]:
    return ["bench", "--targets", f"{HOST_CPU},{ANDROID_CPU}", "--resolutions", FORMAT_RESOLUTION,
            "--precisions", "fp32", "--data", str(data), "--images", "4", "--verify-images", "4", "--runs", "4",
            "--warmup", "1", "--threads", "1", "--cache", str(cache), "--no-progress", "--out", str(out), *extra]


@pytest.fixture(scope="module")
def device_and_local(server, device_venv, synthetic_voc, cache, traced_once, tmp_path_factory) -> tuple[dict, dict]:
    """The same two rows measured on the device over SSH, then here."""
    out = tmp_path_factory.mktemp("runs")
    url = server.url(device_venv["venv"])
    assert main(_bench("--device", url, "--ssh-config", str(server.client_config), data=synthetic_voc, cache=cache,
                       out=out / "device")) == 0
    assert main(_bench(data=synthetic_voc, cache=cache, out=out / "local")) == 0
    return (json.loads((out / "device" / BENCH_RESULTS).read_text()),
            json.loads((out / "local" / BENCH_RESULTS).read_text()))


@pytest.mark.slow
@needs_sshd
def test_the_rows_and_machine_block_are_the_devices(device_and_local, server):
    device, _ = device_and_local
    assert device["complete"] and [r["status"] for r in device["rows"]] == ["ok", "ok"]
    assert device["device"]["name"] == f"{getpass.getuser()}@127.0.0.1:{server.port}"
    # The device install has no torch: its machine block has no matmul peak and its tools no torch; the
    # workstation that converted is recorded apart.
    assert device["machine"]["matmul_peak"]["gflops_per_s"] is None
    assert "torch" not in device["tools"] and "torch" in device["converted_on"]["tools"]
    for row in device["rows"]:
        assert row["device"] == device["device"]["name"] and row["host_proxy"] is False
        assert row["artifact"]["device_manifest"].startswith(device["device"]["work"])
    assert "android-cpu (host proxy)" not in json.dumps(device["rows"])


@pytest.mark.slow
@needs_sshd
def test_the_same_rows_measured_here_differ_only_in_latency(device_and_local):
    device, local = device_and_local
    assert [r["id"] for r in device["rows"]] == [r["id"] for r in local["rows"]]
    for there, here in zip(device["rows"], local["rows"]):
        assert there["artifact"]["sha256"] == here["artifact"]["sha256"]
        for key in ("status", "target", "backend", "resolution", "input_hw", "precision", "dataset", "model"):
            assert there[key] == here[key], key
        for key in ("images", "miou", "miou_gt_classes", "pixel_accuracy", "per_class_iou", "reference_miou",
                    "reference_per_class_iou"):
            assert there["accuracy"][key] == here["accuracy"][key], key
        # both rounded to 4 places, from a rounded and an unrounded mIoU
        assert there["accuracy"]["miou_delta"] == pytest.approx(here["accuracy"]["miou_delta"], abs=1e-4)
        assert there["cost"]["gflops"] == pytest.approx(here["cost"]["gflops"], rel=1e-3)
        assert there["verification_check"]["agrees"] and here["verification_check"]["agrees"]
        assert there["latency"]["total_ms"] != here["latency"]["total_ms"]  # measured twice, never equal
        assert there["accuracy"]["argmax_agreement"] is None and "device's masks" in there["reference_note"]


@pytest.mark.slow
@needs_sshd
def test_a_second_run_copies_nothing_and_a_lost_connection_keeps_the_finished_rows(
        server, device_venv, synthetic_voc, cache, device_and_local, tmp_path, capsys):
    out = tmp_path / "report"
    argv = _bench("--device", server.url(device_venv["venv"]), "--ssh-config", str(server.client_config),
                  data=synthetic_voc, cache=cache, out=out)
    results = out / "results.json"

    def cut_after_first_row() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                if len(json.loads(results.read_text())["rows"]) == 1:
                    server.kill()
                    return
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.02)

    cutter = threading.Thread(target=cut_after_first_row)
    cutter.start()
    try:
        status = main(argv)
    finally:
        cutter.join()
        server.start()
    err = capsys.readouterr().err
    assert status == 2 and len(err.strip().splitlines()) == 1, err
    assert "lost the connection after 1 of 2 rows" in err and "the same command again measures the rest" in err
    partial = json.loads(results.read_text())
    assert partial["complete"] is False and len(partial["rows"]) == 1
    assert partial["device"]["copied"]["files"] == 0  # the earlier run left everything there
    assert "PARTIAL: 1 of 2 rows" in (out / BENCH_REPORT).read_text()

    assert main(argv) == 0
    finished = json.loads(results.read_text())
    assert finished["complete"] and len(finished["rows"]) == 2
    assert finished["rows"][0] == partial["rows"][0]  # kept as measured, not measured again
    assert finished["device"]["rows_kept_from_before"] == 1
    assert finished["rows"][1]["status"] == "ok"


@needs_sshd
def test_a_device_without_edgeseg_is_refused_in_one_line_before_any_conversion(server, synthetic_voc, tmp_path,
                                                                               capsys):
    empty = tmp_path / "no-venv"
    empty.mkdir()
    status = main(_bench("--device", server.url(empty), "--ssh-config", str(server.client_config),
                         data=synthetic_voc, cache=tmp_path / "cache", out=tmp_path / "out"))
    err = capsys.readouterr().err
    assert status == 2 and len(err.strip().splitlines()) == 1, err
    assert f"has no edgeseg at {empty}/bin/edgeseg" in err and "nothing was converted" in err
    assert not (tmp_path / "cache").exists() and not (tmp_path / "out").exists()


@pytest.mark.slow
@needs_sshd
def test_a_device_missing_an_engine_is_refused_in_one_line_before_any_conversion(server, device_venv, synthetic_voc,
                                                                                 tmp_path, capsys):
    argv = _bench("--device", server.url(device_venv["venv"]), "--ssh-config", str(server.client_config),
                  data=synthetic_voc, cache=tmp_path / "cache", out=tmp_path / "out")
    argv[argv.index("--targets") + 1] = "host-cpu,jetson-orin-nano"
    status = main(argv)
    err = capsys.readouterr().err
    assert status == 2 and len(err.strip().splitlines()) == 1, err
    assert "cannot run this bench: jetson-orin-nano: cannot run, because TensorRT is not installed" in err
    assert "host-cpu:" not in err  # what it can run is not listed as missing
    assert not (tmp_path / "cache").exists() and not (tmp_path / "out").exists()


@needs_sshd
def test_a_device_that_does_not_answer_is_refused_in_one_line(server, synthetic_voc, tmp_path, capsys):
    url = f"ssh://{getpass.getuser()}@127.0.0.1:{_free_port()}/venv"
    status = main(_bench("--device", url, "--ssh-config", str(server.client_config), data=synthetic_voc,
                         cache=tmp_path / "cache", out=tmp_path / "out"))
    err = capsys.readouterr().err
    assert status == 2 and len(err.strip().splitlines()) == 1 and "Connection refused" in err, err
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize(("url", "host", "user", "port", "venv"), [
    ("ssh://orin.local", "orin.local", None, None, None),
    ("ssh://nvidia@orin.local:2222/~/edgeseg", "orin.local", "nvidia", 2222, "~/edgeseg"),
    ("ssh://pi@10.0.0.7/opt/edgeseg/", "10.0.0.7", "pi", None, "/opt/edgeseg"),
])
def test_device_addresses(url, host, user, port, venv):
    address = parse_device(url)
    assert (address.host, address.user, address.port, address.venv) == (host, user, port, venv)


@pytest.mark.parametrize("url", ["orin.local", "http://orin.local", "ssh://orin.local:99999", "ssh://a:pw@orin"])
def test_a_bad_device_address_is_one_line(url):
    with pytest.raises(ConfigError, match="--device"):
        parse_device(url)
