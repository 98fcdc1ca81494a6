#!/bin/sh
# Makes the files labs/linux-disk.yaml boots: the host distribution's kernel and a
# small raw disk image. Run once: labs/images/prepare.sh
# Needs a kernel in /boot (on Debian: apt-get install linux-image-amd64).
set -eu
here=$(cd "$(dirname "$0")" && pwd)

kernel=$(ls /boot/vmlinuz-* 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$kernel" ]; then
    echo "prepare.sh: no kernel in /boot; install one first: apt-get install linux-image-amd64" >&2
    exit 1
fi
cp "$kernel" "$here/vmlinuz"
echo "images/vmlinuz  <- $kernel"

# 1 MiB disk; the first sector starts with a known line so a guest can prove it read it.
disk="$here/disk.img"
truncate -s 0 "$disk"
truncate -s 1M "$disk"
printf 'kvmlab test disk: first sector\n' | dd of="$disk" conv=notrunc status=none
echo "images/disk.img (1 MiB raw)"
