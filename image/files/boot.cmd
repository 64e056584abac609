# linerec A/B boot script for U-Boot (image/build makes boot.scr of it with mkimage).
# RAUC's U-Boot integration: BOOT_ORDER is the order to try the root slots in, BOOT_x_LEFT
# the tries each has left. Each boot takes one try from the first slot that has any; the
# booted system gives it back once it works (`rauc status mark-good`, done by linerec once
# READY), so a slot that fails to boot or to come up three times is skipped. RAUC changes
# BOOT_ORDER (new slot first, 3 tries) when it has installed an update.
# The variables live in uboot.env on the boot partition (the file fw_setenv/fw_printenv edit
# on the box: /etc/fw_env.config); only these are read from it and written back.
# Slots: A is partition 2, B partition 3, found by the disk's PARTUUID (image/build sets it).
setenv envaddr ${kernel_addr_r}
setenv BOOT_ORDER
setenv BOOT_A_LEFT
setenv BOOT_B_LEFT
setenv linerec_extra
if load ${devtype} ${devnum}:${distro_bootpart} ${envaddr} uboot.env; then
    env import -c ${envaddr} 0x4000 BOOT_ORDER BOOT_A_LEFT BOOT_B_LEFT linerec_extra
fi
test -n "${BOOT_ORDER}" || setenv BOOT_ORDER "A B"
test -n "${BOOT_A_LEFT}" || setenv BOOT_A_LEFT 3
test -n "${BOOT_B_LEFT}" || setenv BOOT_B_LEFT 3

setenv slot
for s in ${BOOT_ORDER}; do
    if test "x${slot}" = "x"; then
        if test "x${s}" = "xA" && test ${BOOT_A_LEFT} -gt 0; then
            setexpr BOOT_A_LEFT ${BOOT_A_LEFT} - 1
            setenv slot A
            setenv slotpart 2
        fi
        if test "x${s}" = "xB" && test ${BOOT_B_LEFT} -gt 0; then
            setexpr BOOT_B_LEFT ${BOOT_B_LEFT} - 1
            setenv slot B
            setenv slotpart 3
        fi
    fi
done

if test "x${slot}" = "x"; then
    # Every slot used up its tries: start over rather than never boot again.
    echo "linerec: no slot has tries left; giving each 3 again"
    setenv BOOT_A_LEFT 3
    setenv BOOT_B_LEFT 3
    env export -c -s 0x4000 ${envaddr} BOOT_ORDER BOOT_A_LEFT BOOT_B_LEFT linerec_extra
    fatwrite ${devtype} ${devnum}:${distro_bootpart} ${envaddr} uboot.env 0x4000
    reset
fi

# The try is spent before the kernel loads: a slot that hangs or resets counts too.
env export -c -s 0x4000 ${envaddr} BOOT_ORDER BOOT_A_LEFT BOOT_B_LEFT linerec_extra
fatwrite ${devtype} ${devnum}:${distro_bootpart} ${envaddr} uboot.env 0x4000
echo "linerec: booting slot ${slot} (order ${BOOT_ORDER}; tries left A ${BOOT_A_LEFT}, B ${BOOT_B_LEFT})"

part uuid ${devtype} ${devnum}:${slotpart} rootuuid
setexpr kernel_comp_addr_r ${ramdisk_addr_r} + 0x6000000
setenv kernel_comp_size 0x3000000
if load ${devtype} ${devnum}:${slotpart} ${kernel_addr_r} /vmlinuz; then
    if load ${devtype} ${devnum}:${slotpart} ${ramdisk_addr_r} /initrd.img; then
        setenv rdsize ${filesize}
        setenv bootargs "root=PARTUUID=${rootuuid} ro rootwait rauc.slot=${slot} fsck.repair=yes net.ifnames=0 cma=64M console=tty1 console=ttyAMA0,115200 ${linerec_extra}"
        if test -n "${fdt_addr}"; then setenv dtb ${fdt_addr}; else setenv dtb ${fdtcontroladdr}; fi
        booti ${kernel_addr_r} ${ramdisk_addr_r}:${rdsize} ${dtb}
    fi
fi
echo "linerec: slot ${slot} did not boot; trying again"
reset
