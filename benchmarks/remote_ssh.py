"""A device reached over SSH, through OpenSSH's own `ssh` and `scp` (the user's keys, agent and
~/.ssh/config apply; edgeseg has no SSH code of its own).

`ssh://user@host[:port][/path]` names the device. `/path` is the device's edgeseg virtual environment
(the folder holding `bin/edgeseg`, as `python3 -m venv ~/edgeseg` makes it in docs/jetson.md); a path
that starts with `/~/` is relative to the login's home (`ssh://nvidia@orin.local/~/edgeseg`). Without a
path, `edgeseg` is looked up on the login shell's PATH. The copies the bench keeps on the device live
in `<venv>/share/edgeseg/bench/` (without a path: `~/.cache/edgeseg/device/`).
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from edgeseg.errors import ConfigError, EdgesegError

SSH_EXIT_CONNECTION = 255  # ssh's own exit status for a connection it could not make or lost
# Batch mode: a password prompt would hang a sweep, so keys (or an agent) are required. The keep-alives make
# a device that vanished (unplugged, Wi-Fi gone) end the command in about 30 s instead of never.
SSH_OPTIONS = ("-o", "BatchMode=yes", "-o", "ConnectTimeout=15", "-o", "ServerAliveInterval=10",
               "-o", "ServerAliveCountMax=3")


class DeviceError(EdgesegError):
    """The device cannot do what the bench needs: unreachable, no edgeseg, an engine missing."""


class DeviceConnectionError(DeviceError):
    """ssh or scp lost (or never made) the connection."""


@dataclass(frozen=True)
class DeviceAddress:
    """A parsed `ssh://user@host[:port][/path]`."""

    url: str
    host: str
    user: str | None = None
    port: int | None = None
    venv: str | None = None  # as given: absolute, or "~/..." relative to the login's home

    @property
    def destination(self) -> str:
        """`user@host` (or `host`), what ssh and scp are given; the port goes in an option."""
        return f"{self.user}@{self.host}" if self.user else self.host

    @property
    def name(self) -> str:
        """The device as reports name it: `user@host[:port]`."""
        return self.destination + (f":{self.port}" if self.port else "")


def parse_device(url: str) -> DeviceAddress:
    """`ssh://user@host[:port][/path]` -> DeviceAddress; one ConfigError line for anything else."""
    parts = urlsplit(url)
    if parts.scheme != "ssh" or not parts.hostname:
        raise ConfigError(f"--device {url}: give ssh://[user@]host[:port][/path/to/edgeseg-venv]")
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"--device {url}: the port is not a number from 1 to 65535") from None
    if parts.query or parts.fragment or parts.password:
        raise ConfigError(f"--device {url}: no password, query or fragment: ssh keys and ~/.ssh/config decide the rest")
    path = unquote(parts.path)
    venv = None
    if path not in ("", "/"):
        venv = path[1:] if path.startswith("/~/") else path.rstrip("/")
    return DeviceAddress(url=url, host=parts.hostname, user=unquote(parts.username) if parts.username else None,
                         port=port, venv=venv)


def remote_word(path: str) -> str:
    """`path` as one word of a POSIX shell command on the device; `~/x` expands to the login's home."""
    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    return shlex.quote(path)


class SshDevice:
    """Runs commands on the device and copies files to it, each through one `ssh` / `scp` process."""

    def __init__(self, address: DeviceAddress, ssh_config: Path | None = None) -> None:
        missing = [tool for tool in ("ssh", "scp") if shutil.which(tool) is None]
        if missing:
            raise DeviceError(f"--device needs OpenSSH's {' and '.join(missing)} on this machine's PATH "
                              "(Debian/Ubuntu: apt install openssh-client)")
        if ssh_config is not None and not Path(ssh_config).is_file():
            raise ConfigError(f"--ssh-config {ssh_config}: file not found")
        self.address = address
        self.config_options = ("-F", str(ssh_config)) if ssh_config is not None else ()

    def _ssh_argv(self) -> list[str]:
        port = ("-p", str(self.address.port)) if self.address.port else ()
        return ["ssh", *self.config_options, *SSH_OPTIONS, *port, self.address.destination]

    def run(self, script: str, *, stdin: str | None = None,
            timeout: float | None = None) -> subprocess.CompletedProcess:
        """Run a POSIX shell `script` on the device; its CompletedProcess (text). A connection ssh could
        not make or lost raises DeviceConnectionError; the script's own exit status is the caller's."""
        try:
            done = subprocess.run([*self._ssh_argv(), script], input=stdin, capture_output=True, text=True,
                                  timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise DeviceConnectionError(f"{self.address.name}: no answer within {timeout:.0f} s") from None
        if done.returncode == SSH_EXIT_CONNECTION:
            raise DeviceConnectionError(f"{self.address.name}: {last_line(done.stderr) or 'ssh exited 255'}")
        return done

    def copy_to(self, files: list[Path], remote_dir: str) -> None:
        """Copy `files` into the existing folder `remote_dir` (absolute) on the device, keeping their names."""
        port = ("-P", str(self.address.port)) if self.address.port else ()
        argv = ["scp", "-q", "-p", *self.config_options, *SSH_OPTIONS, *port, *(str(f) for f in files),
                f"{self.address.destination}:{remote_dir}/"]
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            # scp says 1 for a lost connection as for a full disk: both end the copy, and the sha256
            # check that follows every copy finds what did not arrive.
            raise DeviceConnectionError(f"{self.address.name}: scp to {remote_dir} failed: "
                                        f"{last_line(done.stderr) or f'exit status {done.returncode}'}")


def last_line(text: str) -> str:
    """The last non-empty line of a command's output, stripped: what it says when it fails."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""
