"""The system test's Debian 12 image: built once from the package registry, cached, reused.

The recipe (:data:`RECIPE` plus the files it copies in and the project's dependency list) is
hashed; the cache directory ``${XDG_CACHE_HOME:-~/.cache}/dermaguard/system-image/<hash>/``
holds what it made, so a changed recipe is a new directory and an unchanged one is reused:

- ``rootfs/``: ``debootstrap --variant=minbase`` of bookworm, plus what only the test image has
  (the control agent and its unit, a static network address, ``/boot/firmware`` standing in for
  Raspberry Pi OS's boot partition);
- ``offline/``: what provisioning needs with no network, laid out as ``provision.sh --offline``
  reads it: ``debs/<step>/*.deb`` (fetched inside the fresh root, so their dependencies are
  resolved against it) and ``wheels/`` (``pip download`` for the guest's Python and platform).

Each run makes a fresh 2 GB ext4 root disk from ``rootfs/`` with ``mke2fs -d`` (no loop device,
no mount) and a small ext4 payload disk with the checkout and the wheelhouse.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

RECIPE: dict[str, object] = {
    "version": 1,
    "suite": "bookworm",
    "arch": "amd64",
    "mirror": "http://deb.debian.org/debian",
    "variant": "minbase",
    "include": ["systemd-sysv", "udev", "linux-image-amd64", "python3", "python3-venv"],
    # Debian packages provisioning installs, fetched on the host: the local broker of step 8.
    "offline_debs": {"mosquitto": ["mosquitto"]},
    "python": "3.11",
    "platforms": [
        "manylinux_2_36_x86_64",
        "manylinux_2_28_x86_64",
        "manylinux_2_17_x86_64",
        "manylinux2014_x86_64",
        "linux_x86_64",
    ],
}

AGENT_UNIT = """\
# Only in dermaguard's system-test image: the host's control channel (tests/system/guest_agent.py)
[Unit]
Description=dermaguard system test: control agent on the virtio-serial port
DefaultDependencies=no
After=systemd-udevd.service
Before=multi-user.target

[Service]
ExecStart=/usr/bin/python3 /usr/local/lib/dermaguard-test/guest_agent.py
Restart=always
RestartSec=1

[Install]
WantedBy=multi-user.target
"""

# A fixed address on QEMU's user network: no DHCP to wait for; the host reaches the guest's
# ports through QEMU's forwards only.
NETWORK = """\
[Match]
Name=e*

[Network]
Address=10.0.2.15/24
Gateway=10.0.2.2
"""

FSTAB = "/dev/vda / ext4 rw,errors=remount-ro 0 1\n"

# An initramfs with what the VM's root needs only: under emulation, unpacking and probing the
# usual "most modules" one costs a quarter of the boot.
INITRAMFS_CONF = "MODULES=list\n"
INITRAMFS_MODULES = "virtio_pci\nvirtio_blk\next4\ncrc32c_generic\n"


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dermaguard" / "system-image"


def project_requirements() -> list[str]:
    """What the wheelhouse must hold: dermaguard's dependencies and its build backend."""
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    return [*data["project"]["dependencies"], *data["build-system"]["requires"], "wheel"]


def recipe_hash() -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps(RECIPE, sort_keys=True).encode())
    digest.update(json.dumps(project_requirements()).encode())
    texts = (AGENT_UNIT, NETWORK, FSTAB, INITRAMFS_CONF, INITRAMFS_MODULES)
    for text in (*texts, (HERE / "guest_agent.py").read_text()):
        digest.update(text.encode())
    digest.update((HERE / "image.py").read_bytes())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class Image:
    """A built image in the cache."""

    root: Path

    @property
    def rootfs(self) -> Path:
        return self.root / "rootfs"

    @property
    def offline(self) -> Path:
        return self.root / "offline"

    def kernel(self) -> Path:
        return sorted((self.rootfs / "boot").glob("vmlinuz-*"))[-1]

    def initrd(self) -> Path:
        return sorted((self.rootfs / "boot").glob("initrd.img-*"))[-1]


def _run(cmd: list[str], **kw: object) -> None:
    print("  $", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, **kw)  # type: ignore[call-overload]


def _chroot(root: Path, script: str) -> None:
    _run(["chroot", str(root), "/bin/sh", "-ec", script])


def ensure_image(log: list[str]) -> Image:
    """The cached image for the current recipe, built first if missing (needs root)."""
    image = Image(cache_root() / recipe_hash())
    if (image.root / "DONE").exists():
        log.append(f"image: cached {image.root}")
        return image
    if os.geteuid() != 0:
        sys.exit("building the system-test image needs root (debootstrap and chroot)")
    started = time.monotonic()
    if image.root.exists():
        shutil.rmtree(image.root)
    work = image.root.with_name(image.root.name + ".partial")
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    _build_rootfs(work / "rootfs")
    _fetch_debs(work / "rootfs", work / "offline" / "debs")
    _fetch_wheels(work / "offline" / "wheels")
    _finish_rootfs(work / "rootfs")
    (work / "recipe.json").write_text(json.dumps(RECIPE, indent=2) + "\n")
    (work / "DONE").write_text(f"{time.monotonic() - started:.0f} s\n")
    work.rename(image.root)
    log.append(f"image: built {image.root} in {time.monotonic() - started:.0f} s")
    return image


def _build_rootfs(root: Path) -> None:
    include = ",".join(RECIPE["include"])  # type: ignore[arg-type]
    _run(
        [
            "debootstrap",
            f"--variant={RECIPE['variant']}",
            f"--include={include}",
            f"--arch={RECIPE['arch']}",
            str(RECIPE["suite"]),
            str(root),
            str(RECIPE["mirror"]),
        ],
        stdout=subprocess.DEVNULL,
    )


def _fetch_debs(root: Path, dest: Path) -> None:
    """Each step's .debs with the dependencies the fresh root lacks, downloaded in the root."""
    shutil.copy("/etc/resolv.conf", root / "etc" / "resolv.conf")
    _chroot(root, "apt-get update -qq")
    steps: dict[str, list[str]] = RECIPE["offline_debs"]  # type: ignore[assignment]
    for step, packages in steps.items():
        _chroot(root, "apt-get clean")
        _chroot(
            root,
            "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --download-only "
            + " ".join(packages)
            + " >/dev/null",
        )
        (dest / step).mkdir(parents=True)
        for deb in (root / "var/cache/apt/archives").glob("*.deb"):
            shutil.move(deb, dest / step / deb.name)
    _chroot(root, "apt-get clean; rm -rf /var/lib/apt/lists/*")
    (root / "etc" / "resolv.conf").unlink()


def _fetch_wheels(dest: Path) -> None:
    """Binary wheels for the guest's Python and platform, whatever the host runs."""
    pip_download(dest, project_requirements(), RECIPE)


def pip_download(dest: Path, requirements: list[str], recipe: dict[str, object]) -> None:
    """Binary wheels of ``requirements`` for the Python and platforms of ``recipe``."""
    platforms = [f"--platform={p}" for p in recipe["platforms"]]  # type: ignore[attr-defined]
    py = str(recipe["python"])
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--dest",
            str(dest),
            "--only-binary=:all:",
            f"--python-version={py}",
            "--implementation=cp",
            f"--abi=cp{py.replace('.', '')}",
            *platforms,
            *requirements,
        ],
        stderr=subprocess.DEVNULL,
    )


def _finish_rootfs(root: Path) -> None:
    write_guest_files(root)
    initramfs = root / "etc" / "initramfs-tools"
    (initramfs / "conf.d" / "dermaguard-test.conf").write_text(INITRAMFS_CONF)
    with (initramfs / "modules").open("a") as modules:
        modules.write(INITRAMFS_MODULES)
    _chroot(root, "update-initramfs -u -k all >/dev/null 2>&1")
    # No first-boot questions, and root has no password (the serial console is the test's own).
    _chroot(root, "passwd -d root >/dev/null; systemd-machine-id-setup >/dev/null 2>&1 || true")


def write_guest_files(root: Path) -> None:
    """The test's own files in a root tree (name, fstab, network, the guest agent's unit),
    written from the host: both architectures' images share them."""
    (root / "etc" / "hostname").write_text("dermaguard-test\n")
    (root / "etc" / "hosts").write_text("127.0.0.1 localhost\n127.0.1.1 dermaguard-test\n")
    (root / "etc" / "fstab").write_text(FSTAB)
    net = root / "etc" / "systemd" / "network" / "20-wired.network"
    net.parent.mkdir(parents=True, exist_ok=True)
    net.write_text(NETWORK)
    # Raspberry Pi OS's boot partition, which provision.sh writes config.txt into; here a plain
    # directory (nothing reads it: this is not a Pi).
    (root / "boot" / "firmware").mkdir(parents=True, exist_ok=True)
    agent = root / "usr" / "local" / "lib" / "dermaguard-test" / "guest_agent.py"
    agent.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(HERE / "guest_agent.py", agent)
    unit = root / "etc" / "systemd" / "system" / "dermaguard-test-agent.service"
    unit.write_text(AGENT_UNIT)
    _run(
        [
            "systemctl",
            f"--root={root}",
            "enable",
            "dermaguard-test-agent.service",
            "systemd-networkd.service",
        ],
        stderr=subprocess.DEVNULL,
    )


def make_disks(image: Image, workdir: Path, payload: Path) -> tuple[Path, Path]:
    """A fresh root disk from the cached tree, and the payload disk (checkout, wheelhouse)."""
    disk = workdir / "root.img"
    extra = workdir / "payload.img"
    for path, tree, size in ((disk, image.rootfs, "2G"), (extra, payload, "1G")):
        path.unlink(missing_ok=True)
        subprocess.run(
            ["mke2fs", "-q", "-F", "-t", "ext4", "-d", str(tree), str(path), size],
            check=True,
        )
    return disk, extra
