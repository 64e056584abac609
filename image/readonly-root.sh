#!/bin/sh
# Runs inside the arm64 root filesystem at the end of rootfs-setup.sh: the root filesystem is
# mounted read-only at run time, so routine operation (recording, logging, time keeping) never
# writes to it. What has to change at run time lives elsewhere:
#   /data              the data partition, bound to:
#     /var/lib/linerec   recordings, outbox, identity key
#     /var/lib/systemd   timesyncd's clock file (a Pi has no real-time clock: after a power
#                        cut the clock starts from there), the random seed
#     /var/lib/alsa      the sound card's mixer levels
#   /tmp /var/tmp /var/log   tmpfs; the journal is in RAM (/run)
#   /etc               written only by linerec-provision, which remounts / read-write for it
set -eu
B=${1:-/tmp/linerec-build}

# / is not listed: it is whichever root slot U-Boot booted (root=PARTUUID=... ro on the
# kernel command line, from boot.scr).
cat > /etc/fstab <<'FSTAB'
LABEL=LINERECBOOT   /boot/firmware    vfat   defaults,noatime,umask=0077               0 2
LABEL=LINEREC_DATA  /data             ext4   defaults,noatime,nodev,nosuid,noexec      0 2
/data/linerec       /var/lib/linerec  none   bind,x-systemd.requires-mounts-for=/data  0 0
/data/systemd       /var/lib/systemd  none   bind,x-systemd.requires-mounts-for=/data  0 0
/data/alsa          /var/lib/alsa     none   bind,x-systemd.requires-mounts-for=/data  0 0
tmpfs               /tmp              tmpfs  defaults,nosuid,nodev,size=64M            0 0
tmpfs               /var/tmp          tmpfs  defaults,nosuid,nodev,size=16M            0 0
tmpfs               /var/log          tmpfs  defaults,nosuid,nodev,noexec,size=16M,mode=0755  0 0
FSTAB
# The data partition's tree (image/build moves /data onto that partition). Its top directory
# is root's: the recorder's user owns only linerec/, so it cannot swap the system's state.
install -d -m 755 /data /var/lib/alsa
install -d -o linerec -g linerec -m 750 /data/linerec
cp -a /var/lib/systemd /data/systemd
cp -a /var/lib/alsa /data/alsa   # the mixer levels the technician sets (alsactl store)

install -d /usr/lib/linerec /etc/systemd/system/linerec-provision.service.d
install -m 755 $B/files/linerec-grow-data /usr/lib/linerec/
install -m 644 $B/files/linerec-grow-data.service /etc/systemd/system/
install -m 644 $B/files/provision-readonly-root.conf \
    /etc/systemd/system/linerec-provision.service.d/readonly-root.conf
systemctl enable linerec-grow-data.service
# Housekeeping that writes to / (dpkg database backups, apt's daily download): not here.
systemctl mask dpkg-db-backup.timer apt-daily.timer apt-daily-upgrade.timer

# Nothing in /usr changes at run time: mark /etc and /var up to date (what systemd-update-done
# writes; Debian does not ship it), or units with ConditionNeedsUpdate (systemd-sysusers)
# would try to write to / at every boot.
for f in /etc/.updated /var/.updated; do
    printf 'TIMESTAMP_NSEC=%s\n' "$(stat -c %.9Y /usr | tr -d .)" > $f
    touch -r /usr $f
done
