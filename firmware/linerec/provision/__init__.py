"""First boot: turn the technician's site file on the boot partition into a configured box."""
