#!/bin/sh
# Runs inside the arm64 root filesystem (under qemu-user) from image/build's mmdebstrap hook.
# /tmp/linerec-build holds: wheels/ (host-built linerec + aarch64 wheels), pyalsaaudio sdist,
# the systemd units.
set -eu
B=/tmp/linerec-build
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8

# --- users and groups -------------------------------------------------------------------
# linerec.service asks for SupplementaryGroups=audio gpio: the group must exist or the unit fails.
getent group gpio >/dev/null || groupadd --system gpio
getent group linerec >/dev/null || groupadd --system linerec
getent passwd linerec >/dev/null || useradd --system --gid linerec --groups audio,gpio \
    --home-dir /var/lib/linerec --no-create-home --shell /usr/sbin/nologin linerec
echo 'SUBSYSTEM=="gpio", GROUP="gpio", MODE="0660"' > /etc/udev/rules.d/60-linerec-gpio.rules
passwd -l root
usermod -p '!' root

# --- Python: venv on top of Debian's numpy/systemd ---------------------------------------
python3 -m venv --system-site-packages /opt/linerec
# pyalsaaudio has no binary wheels: build it here against libasound2-dev (purged below).
/opt/linerec/bin/pip wheel --no-index --no-build-isolation --no-deps -w $B/wheels $B/sdist/pyalsaaudio-*.tar.gz
/opt/linerec/bin/pip install --no-index --find-links $B/wheels \
    'paho-mqtt>=2' 'cryptography>=41' 'pyalsaaudio>=0.11'
/opt/linerec/bin/pip install --no-index --no-deps $B/wheels/linerec-*.whl
/opt/linerec/bin/pip check
/opt/linerec/bin/python -c 'import linerec, numpy, paho.mqtt.enums, cryptography, alsaaudio, systemd.daemon; print("imports ok", linerec.__version__)'
ln -sf /opt/linerec/bin/linerec /usr/bin/linerec
rm -rf /root/.cache

# --- build-only packages out ---------------------------------------------------------------
apt-get purge -y gcc libc6-dev python3-dev libasound2-dev python3-setuptools python3-wheel
apt-get autoremove --purge -y

# --- systemd units -----------------------------------------------------------------------
install -m 644 $B/linerec.service $B/linerec-provision.service /etc/systemd/system/
systemctl enable linerec.service linerec-provision.service systemd-networkd.service \
    systemd-timesyncd.service
# SSH only once provisioning put keys there (it creates /etc/linerec/ssh-enabled).
mkdir -p /etc/systemd/system/ssh.service.d
cat > /etc/systemd/system/ssh.service.d/linerec.conf <<'UNIT'
[Unit]
ConditionPathExists=/etc/linerec/ssh-enabled
[Service]
# Host keys are made per box on its first SSH start, never shipped in the image
# (before Debian's own `sshd -t`, which fails without them).
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
UNIT
rm -f /etc/ssh/ssh_host_*
printf 'PasswordAuthentication no\nKbdInteractiveAuthentication no\n' > /etc/ssh/sshd_config.d/linerec.conf

# Journal in RAM only (the root filesystem is read-only: readonly-root.sh).
mkdir -p /etc/systemd/journald.conf.d
printf '[Journal]\nStorage=volatile\nRuntimeMaxUse=32M\n' > /etc/systemd/journald.conf.d/linerec.conf

echo linerec > /etc/hostname
printf '127.0.0.1\tlocalhost\n127.0.1.1\tlinerec\n::1\tlocalhost ip6-localhost ip6-loopback\n' > /etc/hosts
# Unprovisioned boxes: DHCP on the wired port (provisioning writes its own 20-linerec-*.network).
cat > /etc/systemd/network/90-default-wired.network <<'NET'
[Match]
Name=eth* en*
[Network]
DHCP=yes
NET

# raspi-firmware writes cmdline.txt from this; root by label so any SD card / USB disk works.
sed -i 's|^#\?ROOTPART=.*|ROOTPART=LABEL=LINEREC_ROOT|' /etc/default/raspi-firmware
grep -q '^ROOTPART=' /etc/default/raspi-firmware || echo 'ROOTPART=LABEL=LINEREC_ROOT' >> /etc/default/raspi-firmware
grep -q '^CONSOLES=' /etc/default/raspi-firmware || echo 'CONSOLES="ttyS1,115200 tty0"' >> /etc/default/raspi-firmware
kver=$(ls /lib/modules | sort -V | tail -1)
/etc/kernel/postinst.d/z50-raspi-firmware "$kver"

apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
sh $B/readonly-root.sh $B   # fstab, the data partition's share, provisioning's write window
rm -rf $B
: > /etc/machine-id   # systemd makes one on first boot
