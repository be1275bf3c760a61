"""Boot test of the amd64 image under QEMU: READY and /healthz, then an update that commits and one
that rolls back.

Run through ``scripts/test-image`` after ``firmware-image/build.sh amd64``. Every boot uses a copy
of the built disk (the build output stays pristine) and ends either by the guest powering off or by
killing QEMU, which is a power cut. Between boots the test reads and writes the update boot state
on the disk's data partition with ``debugfs`` (no mount needed): that is how a bundle applied on
the host reaches the guest. Counting the trial boot, committing and rolling back are the guest's
own units. The root the kernel mounts stays root-a (QEMU boots the kernel directly, there is no
bootloader to switch partitions).

Steps:
 1. boot: /healthz answers 200 on a forwarded port, and the first-boot report says the gateway's
    unit is active (a Type=notify unit is active only after READY=1); times from QEMU's start;
 2. ``avila-edge update apply`` of the build's image signed as 90.0.0 on a copy of the slot store,
    which is then put on the data partition (slot b armed for its trial);
 3. boot: the image's avila-edge-update-boot.service counts the trial boot (``update boot``) and
    its avila-edge-update-commit.service finds the gateway healthy and commits b;
 4. a second update (91.0.0 into slot a), then a boot with the gateway masked: the commit unit
    finds no healthy gateway within its deadline, rolls back and reboots (QEMU ends);
 5. the boot state shows slot b primary and slot a marked bad.
"""

# ruff: noqa: S603, S607 - a test harness that runs QEMU, cp and the CLI with arguments it builds itself

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TOP = HERE.parent
CLI = [sys.executable, "-m", "avila_edge.cli"]
GUEST_CLI = "/opt/avila-edge/venv/bin/avila-edge"


ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # systemd colours its status lines
READY = "avila-edge provisioning: gateway service active"  # a Type=notify unit is active after READY=1
COMMIT_DONE = "Finished avila-edge-update-commit.service"
COMMIT_GRACE = 30.0
GUEST_STATE = "/var-lib/avila-edge-update/boot-state.json"  # /var/lib/avila-edge-update on the data partition


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Machine:
    """One QEMU boot of ``disk``, console in ``log``, ``extra`` kernel arguments."""

    def __init__(self, out: Path, disk: Path, log: Path, *, extra: str = "") -> None:
        self.port = free_port()
        self.log = log
        # QEMU_ACCEL=kvm where KVM works; the default, TCG, runs everywhere (and slower)
        accel = os.environ.get("QEMU_ACCEL", "tcg")
        kvm = ["-accel", "kvm", "-cpu", "host"] if accel == "kvm" else ["-accel", "tcg", "-cpu", "max"]
        # the gateway's HTTP port is loopback-only; the forward socket (test machines only) opens 8081
        append = (
            f"root=PARTLABEL=root-a ro console=ttyS0 loglevel=3 systemd.wants=avila-edge-http-forward.socket {extra}"
        )
        monitor = f"unix:{log.with_suffix('.monitor')},server=on,wait=off"
        argv = [
            "qemu-system-x86_64", *kvm, "-m", "1024", "-smp", "2", "-display", "none", "-no-reboot",
            "-kernel", str(out / "avila-edge-amd64.vmlinuz"), "-initrd", str(out / "avila-edge-amd64.initrd"),
            "-append", append, "-serial", f"file:{log}", "-monitor", monitor,
            "-drive", f"file={disk},if=virtio,format=raw",
            "-netdev", f"user,id=net0,hostfwd=tcp:127.0.0.1:{self.port}-:8081", "-device", "virtio-net-pci,netdev=net0",
        ]  # fmt: skip
        self.started = time.monotonic()
        self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL)

    def console(self) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return ANSI.sub("", text)

    def wait_console(self, text: str, within: float) -> float:
        end = time.monotonic() + within
        while text not in self.console():
            if self.process.poll() is not None:
                raise AssertionError(f"QEMU ended before the console showed {text!r}; see {self.log}")
            if time.monotonic() > end:
                raise AssertionError(f"the console did not show {text!r} within {within:g} s; see {self.log}")
            time.sleep(0.2)
        return time.monotonic() - self.started

    def wait_healthy(self, within: float) -> float:
        end = time.monotonic() + within
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as answer:
                    if answer.status == 200:
                        return time.monotonic() - self.started
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > end:
                raise AssertionError(f"/healthz did not answer 200 within {within:g} s; see {self.log}")
            time.sleep(0.5)

    def wait_exit(self, within: float) -> None:
        try:
            self.process.wait(timeout=within)
        except subprocess.TimeoutExpired:
            self.power_cut()
            raise AssertionError(f"the guest did not power off within {within:g} s; see {self.log}") from None

    def power_off(self, within: float = 240) -> None:
        """Press the (ACPI) power button and wait for a clean shutdown, so the data partition is consistent."""
        with socket.socket(socket.AF_UNIX) as monitor:
            monitor.connect(str(self.log.with_suffix(".monitor")))
            monitor.sendall(b"system_powerdown\n")
            time.sleep(0.5)
        self.wait_exit(within)

    def power_cut(self) -> None:
        self.process.kill()
        self.process.wait()


def data_partition(disk: Path) -> str:
    """The data partition of ``disk`` as e2fsprogs names a file system inside an image (``?offset=``)."""
    table = json.loads(subprocess.run(["sfdisk", "--json", str(disk)], capture_output=True, check=True).stdout)
    for part in table["partitiontable"]["partitions"]:
        if part.get("name") == "data":
            return f"{disk}?offset={int(part['start']) * 512}"
    raise AssertionError(f"{disk} has no partition named data")


def debugfs(disk: Path, *commands: str, write: bool = False) -> str:
    script = "\n".join(commands) + "\n"
    argv = ["debugfs", *(["-w"] if write else []), "-f", "-", data_partition(disk)]
    return subprocess.run(argv, input=script, capture_output=True, text=True, check=True).stdout


def read_state(disk: Path) -> dict[str, Any]:
    """The boot state on a stopped guest's data partition."""
    text = debugfs(disk, f"cat {GUEST_STATE}")
    state: dict[str, Any] = json.loads(text[text.index("{") : text.rindex("}") + 1])
    return state


def write_state(disk: Path, source: Path) -> None:
    folder = GUEST_STATE.rsplit("/", 1)[0]
    debugfs(disk, f"mkdir {folder}", f"rm {GUEST_STATE}", f"write {source} {GUEST_STATE}", write=True)


def host_cli(*argv: str) -> None:
    subprocess.run([*CLI, "update", *argv], check=True, stdout=subprocess.DEVNULL)


def resign(bundle: Path, key: Path, version: str, work: Path) -> Path:
    """The image of ``bundle`` signed again as ``version`` (a second update to try)."""
    with tarfile.open(bundle) as tar:
        member = tar.extractfile("image")
        assert member is not None
        image = work / "image"
        with image.open("wb") as f:
            shutil.copyfileobj(member, f, 1 << 20)
    out = work / f"avila-edge-{version}.bundle"
    subprocess.run([*CLI, "update", "sign", "--key-file", str(key), "--version", version,
                    "--hardware", "avila,gw-amd64-qemu", "--image", str(image), "--out", str(out)],
                   check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    image.unlink()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", type=Path, default=HERE / "out", help="the build's output folder")
    parser.add_argument("--boot-only", action="store_true", help="stop after the first boot")
    args = parser.parse_args()
    out: Path = args.out
    bundles = sorted(out.glob("avila-edge-*-amd64.bundle"))
    if not (out / "avila-edge-amd64.img").exists() or not bundles:
        print(f"no amd64 image in {out}: run firmware-image/build.sh amd64 first", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="avila-image-"))
    disk = work / "disk.img"
    subprocess.run(["cp", "--sparse=always", str(out / "avila-edge-amd64.img"), str(disk)], check=True)

    print("1. first boot")
    m = Machine(out, disk, work / "boot1.log")
    healthy = m.wait_healthy(600)
    print(f"   /healthz 200 {healthy:.1f} s after QEMU started")
    ready = m.wait_console(READY, 120)  # the first-boot report runs after the unit reached READY=1
    print(f"   first-boot report: gateway service active (READY=1) by {ready:.1f} s")
    m.power_off()
    if args.boot_only:
        print(f"ok (console logs in {work})")
        return 0

    key = out / "release.ed25519"
    slots = work / "slots"
    device = ("--slots", str(slots), "--keys", f"{key}.pub", "--hardware", "avila,gw-amd64-qemu")
    print("2. apply an update (90.0.0 into slot b): slot b is armed for its trial boots")
    host_cli("apply", str(resign(bundles[-1], key, "90.0.0", work)), *device)
    write_state(disk, slots / "boot-state.json")
    print("3. trial boot: the image's boot unit counts it, its commit unit finds the gateway healthy and commits")
    m = Machine(out, disk, work / "trial1.log")
    healthy = m.wait_healthy(600)
    time.sleep(COMMIT_GRACE)  # the commit unit starts right after READY and finds /healthz at once
    m.power_off()
    state = read_state(disk)
    assert (state["primary"], state["trying"], state["slots"]["b"]["state"]) == ("b", None, "good"), state
    assert state["booted"] == "b", state  # the guest's avila-edge-update-boot.service chose the trial slot
    print(f"   healthy after {healthy:.1f} s; committed: slot b (90.0.0) is primary")

    print("4. apply a second update (91.0.0 into slot a), then a trial boot where the gateway never starts")
    (slots / "boot-state.json").write_text(json.dumps(read_state(disk)))
    host_cli("apply", str(resign(bundles[-1], key, "91.0.0", work)), *device)
    write_state(disk, slots / "boot-state.json")
    m = Machine(out, disk, work / "trial2.log", extra="systemd.mask=avila-edge.service")
    m.wait_exit(900)  # the commit unit waits 120 s, rolls back; FailureAction=reboot ends QEMU (-no-reboot)
    state = read_state(disk)
    assert (state["primary"], state["trying"], state["slots"]["a"]["state"]) == ("b", None, "bad"), state
    assert state["booted"] == "a", state  # booted on trial by the guest's boot unit, then rolled back
    print(f"   rolled back: slot a marked bad ({state['slots']['a']['note']}); slot b stays primary")
    for big in [disk, *work.glob("*.bundle"), *slots.glob("*/image")]:
        big.unlink()  # gigabytes; the console logs and the boot state stay
    print(f"ok (console logs in {work})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
