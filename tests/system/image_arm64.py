"""The system test's Debian 12 arm64 image, for ``tests/system/run --arch arm64``.

The same image as image.py's (bookworm minbase, the control agent, a static network address,
``/boot/firmware``, the offline set) for ``qemu-system-aarch64``: a Raspberry Pi's architecture,
Debian's arm64 kernel. A host without binfmt_misc cannot run an arm64 binary, so nothing here
is chrooted; the build goes in three steps:

1. on the host, ``debootstrap --foreign``: download and unpack only (the .debs are kept in
   ``arm64-debs/`` next to the images, for the next build);
2. in a build VM (QEMU, TCG): the unpacked tree is the VM's initramfs, so the kernel needs no
   disk driver to start it; its init (:data:`BUILD_INIT`) runs debootstrap's second stage in
   RAM, where the kernel's package makes the initrd with the test image's module list (its
   configuration is put in before), then writes the finished tree as a tar stream onto a raw
   disk and powers off;
3. on the host: the tar unpacked into ``rootfs/``, what image.py's ``_finish_rootfs`` adds
   (the units enabled with ``systemctl --root``, root's password emptied in ``/etc/shadow``),
   the offline .debs fetched by the host's apt pointed at that root (``Dir=``, architecture
   arm64, download only: their dependencies are resolved against the root's dpkg status) and
   the wheelhouse by ``pip download`` for aarch64.

The recipe is hashed as image.py's is (this file's bytes included) into the cache directory
``arm64-<hash>/`` beside the amd64 ones; :class:`image.Image` and :func:`image.make_disks` work
on it unchanged. PyPI's ``lgpio`` wheel for aarch64 is fetched into ``lgpio/``, apart from the
wheelhouse: provisioning never installs it (see hardware/README.md, "python3-lgpio"); the test
only shows that it installs and loads on this platform.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import BinaryIO

import image as image_mod
from image import AGENT_UNIT, FSTAB, INITRAMFS_CONF, INITRAMFS_MODULES, NETWORK, Image

HERE = Path(__file__).resolve().parent

RECIPE: dict[str, object] = {
    "version": 1,
    "suite": "bookworm",
    "arch": "arm64",
    "mirror": "http://deb.debian.org/debian",
    "variant": "minbase",
    # initramfs-tools by name: the build VM's second stage makes the initrd with it.
    "include": [
        "systemd-sysv",
        "udev",
        "linux-image-arm64",
        "python3",
        "python3-venv",
        "initramfs-tools",
    ],
    "offline_debs": {"mosquitto": ["mosquitto"]},
    "python": "3.11",
    "platforms": [
        "manylinux_2_36_aarch64",
        "manylinux_2_34_aarch64",
        "manylinux_2_28_aarch64",
        "manylinux_2_17_aarch64",
        "manylinux2014_aarch64",
        "linux_aarch64",
    ],
    # Not provisioning's: PyPI's GPIO library that Raspberry Pi OS packages as python3-lgpio.
    "lgpio_wheel": "lgpio",
    "build_vm": {"memory_mb": 4096, "cpu": "cortex-a72", "smp": 2},
}

# The build VM's init (PID 1 of a kernel booted with the tree as its initramfs). debootstrap's
# second stage mounts /proc and /sys itself and unmounts them when it ends; /dev holds the
# nodes the first stage made until devtmpfs is mounted for the output disk. (A first stage run
# in a container leaves /proc a symlink to itself, which the second stage replaces.)
BUILD_INIT = """\
#!/bin/sh
# dermaguard system test (tests/system/image_arm64.py): the arm64 image's build VM.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
say() { echo "dermaguard-build: $*"; }
off() { echo o >/proc/sysrq-trigger; sleep 30; }
fail() {
    say "FAILED: $*"
    mount -t proc proc /proc 2>/dev/null
    off
}
[ -L /proc ] && rm -f /proc && mkdir /proc
mount -t proc proc /proc
started=$(date +%s)
say "second stage"
/debootstrap/debootstrap --second-stage || {
    tail -n 40 /debootstrap/debootstrap.log
    fail "debootstrap --second-stage"
}
mount -t proc proc /proc 2>/dev/null
mount -t sysfs sysfs /sys 2>/dev/null
mount -t devtmpfs devtmpfs /dev || fail "devtmpfs"
say "second stage done in $(($(date +%s) - started)) s"
rm -f /var/cache/apt/archives/*.deb
systemd-machine-id-setup >/dev/null 2>&1 || true
initrd=$(ls /boot/initrd.img-* 2>/dev/null | tail -n 1)
if [ -z "$initrd" ]; then
    say "update-initramfs -c"
    update-initramfs -c -k "$(ls /lib/modules | tail -n 1)" >/dev/null 2>&1 ||
        fail "update-initramfs"
elif ! lsinitramfs "$initrd" | grep -q virtio_blk; then
    say "update-initramfs -u"
    update-initramfs -u -k all >/dev/null 2>&1 || fail "update-initramfs"
fi
lsinitramfs /boot/initrd.img-* | grep -E '/(virtio_pci|virtio_blk|ext4)\\.ko' || fail "initrd"
modprobe virtio_pci && modprobe virtio_blk || fail "modprobe virtio_blk"
n=0
while [ ! -b /dev/vda ] && [ $n -lt 100 ]; do sleep 0.2; n=$((n + 1)); done
say "writing the tree to /dev/vda"
# (tar's status 1, "a file changed as it was read", is not a failure in this still system)
tar -C / --one-file-system --numeric-owner --xattrs --xattrs-include='*' \\
    --exclude=./dermaguard-build-init -cf /dev/vda .
[ $? -le 1 ] || fail "tar"
sync
say "done in $(($(date +%s) - started)) s"
off
"""

# Where the build VM's initrd looks for the test image's module list (read with
# /etc/initramfs-tools/modules; a file of ours, not a package's conffile, so it can be in the
# tree before dpkg unpacks initramfs-tools).
MODULES_D = "usr/share/initramfs-tools/modules.d/dermaguard-test"

BUILD_TIMEOUT_S = 5400.0


def recipe_hash() -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps(RECIPE, sort_keys=True).encode())
    digest.update(json.dumps(image_mod.project_requirements()).encode())
    texts = (AGENT_UNIT, NETWORK, FSTAB, INITRAMFS_CONF, INITRAMFS_MODULES, BUILD_INIT)
    for text in (*texts, (HERE / "guest_agent.py").read_text()):
        digest.update(text.encode())
    digest.update((HERE / "image_arm64.py").read_bytes())
    digest.update((HERE / "image.py").read_bytes())  # the parts of the build it shares
    return digest.hexdigest()[:16]


def debs_cache() -> Path:
    """debootstrap's download cache (``--cache-dir``), kept across recipes."""
    return image_mod.cache_root() / "arm64-debs"


def ensure_image(log: list[str]) -> Image:
    """The cached arm64 image for the current recipe, built first if missing (needs root)."""
    image = Image(image_mod.cache_root() / f"arm64-{recipe_hash()}")
    if (image.root / "DONE").exists():
        log.append(f"image: cached {image.root}")
        return image
    if os.geteuid() != 0:
        sys.exit("building the system-test image needs root (debootstrap, a tree owned by root)")
    started = time.monotonic()
    if image.root.exists():
        shutil.rmtree(image.root)
    work = image.root.with_name(image.root.name + ".partial")
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    timings: dict[str, float] = {}

    def timed(name: str, since: float) -> float:
        now = time.monotonic()
        timings[name] = round(now - since, 1)
        print(f"  {name}: {now - since:.0f} s", flush=True)
        return now

    mark = started
    first = work / "first-stage"
    _first_stage(first)
    mark = timed("first_stage_s", mark)
    _second_stage_in_vm(first, work)
    shutil.rmtree(first)
    mark = timed("second_stage_vm_s", mark)
    rootfs = work / "rootfs"
    _unpack(work / "tree.tar", rootfs)
    (work / "tree.tar").unlink()
    _fetch_debs(rootfs, work / "offline" / "debs", work / "apt")
    _fetch_wheels(work / "offline" / "wheels", work / "lgpio")
    _finish_rootfs(rootfs)
    timed("host_finish_s", mark)
    (work / "recipe.json").write_text(json.dumps(RECIPE, indent=2) + "\n")
    (work / "DONE").write_text(json.dumps(timings) + "\n")
    work.rename(image.root)
    log.append(f"image: built {image.root} in {time.monotonic() - started:.0f} s {timings}")
    return image


def _first_stage(root: Path) -> None:
    include = ",".join(RECIPE["include"])  # type: ignore[arg-type]
    debs_cache().mkdir(parents=True, exist_ok=True)
    image_mod._run(
        [
            "debootstrap",
            "--foreign",
            f"--arch={RECIPE['arch']}",
            f"--variant={RECIPE['variant']}",
            f"--include={include}",
            f"--cache-dir={debs_cache()}",
            str(RECIPE["suite"]),
            str(root),
            str(RECIPE["mirror"]),
        ],
        stdout=subprocess.DEVNULL,
    )
    init = root / "dermaguard-build-init"
    init.write_text(BUILD_INIT)
    init.chmod(0o755)
    conf = root / "etc" / "initramfs-tools" / "conf.d" / "dermaguard-test.conf"
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(INITRAMFS_CONF)
    modules = root / MODULES_D
    modules.parent.mkdir(parents=True, exist_ok=True)
    modules.write_text(INITRAMFS_MODULES)


def _kernel_of(root: Path, dest: Path) -> Path:
    """The kernel the tree will install, taken from its .deb (nothing of it runs here)."""
    debs = sorted((root / "var" / "cache" / "apt" / "archives").glob("linux-image-*-arm64_*.deb"))
    if not debs:
        raise SystemExit("debootstrap fetched no linux-image-*-arm64 package")
    subprocess.run(["dpkg-deb", "-x", str(debs[-1]), str(dest)], check=True)
    return sorted((dest / "boot").glob("vmlinuz-*"))[-1]


def write_cpio(tree: Path, out: Path) -> None:
    """``tree`` as an uncompressed newc archive, the format the kernel unpacks as initramfs.

    Hard links are written as separate files (the tree has few; the kernel needs no more).
    """
    count = 0

    def entry(f: BinaryIO, name: str, st: os.stat_result | None, data: bytes = b"") -> None:
        nonlocal count
        count += 1
        raw = name.encode() + b"\0"
        fields = [count, 0, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(raw), 0]
        if st is not None:
            fields[1:6] = [st.st_mode, st.st_uid, st.st_gid, 1, int(st.st_mtime)]
            fields[9:11] = [os.major(st.st_rdev), os.minor(st.st_rdev)]
        header = b"070701" + b"".join(b"%08x" % v for v in fields)
        f.write(header + raw + b"\0" * (-(len(header) + len(raw)) % 4))
        f.write(data + b"\0" * (-len(data) % 4))

    with out.open("wb") as f:
        for dirpath, dirnames, filenames in os.walk(tree):
            dirnames.sort()
            here = Path(dirpath)
            for name in [*dirnames, *sorted(filenames)]:
                path = here / name
                arc = str(path.relative_to(tree))
                st = path.lstat()
                if stat.S_ISREG(st.st_mode):
                    entry(f, arc, st, path.read_bytes())
                elif stat.S_ISLNK(st.st_mode):
                    entry(f, arc, st, str(path.readlink()).encode())
                else:  # directories, device nodes, fifos
                    entry(f, arc, st)
        entry(f, "TRAILER!!!", None)


def _second_stage_in_vm(root: Path, work: Path) -> None:
    """Boot the tree as an initramfs; its init finishes it and writes it to a raw disk."""
    with tempfile.TemporaryDirectory(dir=work) as scratch:
        kernel = _kernel_of(root, Path(scratch) / "kernel")
        cpio = Path(scratch) / "tree.cpio"
        write_cpio(root, cpio)
        out = work / "tree.tar"
        with out.open("wb") as f:
            f.truncate(4 << 30)  # sparse; the tar is about 1 GB
        vm: dict[str, int | str] = RECIPE["build_vm"]  # type: ignore[assignment]
        log = work / "build-serial.log"
        cmd = [
            "qemu-system-aarch64",
            "-machine", "virt,accel=tcg",
            "-cpu", str(vm["cpu"]),
            "-smp", str(vm["smp"]),
            "-m", str(vm["memory_mb"]),
            "-nodefaults", "-display", "none", "-no-reboot",
            "-kernel", str(kernel),
            "-initrd", str(cpio),
            "-append", "console=ttyAMA0 rdinit=/dermaguard-build-init panic=1",
            "-drive", f"file={out},format=raw,if=virtio",
            "-nic", "none",
            "-chardev", f"file,id=ser,path={log}",
            "-serial", "chardev:ser",
        ]  # fmt: skip
        print("  $ " + " ".join(cmd), flush=True)
        try:
            subprocess.run(["nice", "-n", "5", *cmd], check=True, timeout=BUILD_TIMEOUT_S)
        except subprocess.TimeoutExpired as exc:
            raise SystemExit(
                f"the build VM did not finish in {BUILD_TIMEOUT_S:g} s; see {log}"
            ) from exc
        said = [
            line[line.index("dermaguard-build:") :]
            for line in log.read_text(errors="replace").splitlines()
            if "dermaguard-build:" in line
        ]
        print("\n".join(f"  {line}" for line in said), flush=True)
        if not any(line.startswith("dermaguard-build: done") for line in said) or any(
            "FAILED" in line for line in said
        ):
            raise SystemExit(f"the build VM failed; see {log}")


def _unpack(tar: Path, root: Path) -> None:
    root.mkdir()
    image_mod._run(
        [
            "tar",
            "-C",
            str(root),
            "--numeric-owner",
            "--xattrs",
            "--xattrs-include=*",
            "-xf",
            str(tar),
        ]
    )


def _fetch_debs(root: Path, dest: Path, work: Path) -> None:
    """Each step's .debs with the dependencies the fresh root lacks: the host's apt with the
    root's dpkg status and keyring, for arm64, download only (no chroot, nothing runs)."""
    etc = work / "etc"
    for sub in ("apt.conf.d", "preferences.d", "sources.list.d"):
        (etc / sub).mkdir(parents=True)
    (work / "lists" / "partial").mkdir(parents=True)
    archives = work / "archives"
    (archives / "partial").mkdir(parents=True)
    (etc / "sources.list").write_text(f"deb {RECIPE['mirror']} {RECIPE['suite']} main\n")
    conf = work / "apt.conf"
    conf.write_text(
        f'Dir "{root}/";\n'
        f'Dir::Etc "{etc}/";\n'
        f'Dir::Etc::TrustedParts "{root}/etc/apt/trusted.gpg.d/";\n'
        f'Dir::State::Lists "{work}/lists/";\n'
        f'Dir::Cache "{work}/cache/";\n'
        f'Dir::Cache::Archives "{archives}/";\n'
        f'Dir::State::status "{root}/var/lib/dpkg/status";\n'
        f'APT::Architecture "{RECIPE["arch"]}";\n'
        f'APT::Architectures {{ "{RECIPE["arch"]}"; }};\n'
        'APT::Install-Recommends "false";\n'
        # the download directories are root's (no chroot): apt's _apt user cannot write them
        'APT::Sandbox::User "root";\n'
        'Debug::NoLocking "true";\n'
    )
    env = {**os.environ, "APT_CONFIG": str(conf), "DEBIAN_FRONTEND": "noninteractive"}
    image_mod._run(["apt-get", "update", "-qq"], env=env)
    steps: dict[str, list[str]] = RECIPE["offline_debs"]  # type: ignore[assignment]
    for step, packages in steps.items():
        for deb in archives.glob("*.deb"):
            deb.unlink()
        image_mod._run(
            ["apt-get", "install", "-y", "-qq", "--download-only", *packages],
            env=env,
            stdout=subprocess.DEVNULL,
        )
        (dest / step).mkdir(parents=True)
        for deb in archives.glob("*.deb"):
            shutil.move(deb, dest / step / deb.name)
    shutil.rmtree(work)


def _fetch_wheels(dest: Path, lgpio: Path) -> None:
    """The wheelhouse for the guest's Python on aarch64, and lgpio's wheel on its own."""
    image_mod.pip_download(dest, image_mod.project_requirements(), RECIPE)
    image_mod.pip_download(lgpio, ["--no-deps", str(RECIPE["lgpio_wheel"])], RECIPE)


def _finish_rootfs(root: Path) -> None:
    """What image.py's ``_finish_rootfs`` adds, done from the host (the initramfs part was done
    in the build VM, with the configuration the first stage put in)."""
    # debootstrap copied the host's: a name server the guest has no route to makes every
    # lookup wait for its timeout (image.py's image has none: lookups fail at once)
    (root / "etc" / "resolv.conf").unlink(missing_ok=True)
    image_mod.write_guest_files(root)
    # No first-boot questions, and root has no password (the serial console is the test's own).
    shadow = root / "etc" / "shadow"
    lines = shadow.read_text().splitlines()
    shadow.write_text(
        "\n".join(
            ":".join([f[0], "", *f[2:]]) if f[0] == "root" else line
            for line, f in ((line, line.split(":")) for line in lines)
        )
        + "\n"
    )
