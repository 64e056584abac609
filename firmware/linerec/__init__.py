"""linerec: call-recorder appliance firmware and collector."""

import os

# The matrix products here are small (a block of DTMF windows, a period to resample): a BLAS
# thread pool only spins beside the audio threads on a Pi's few cores, and on a busy machine
# costs several times the arithmetic. Set before numpy loads; an explicit setting wins.
for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

__version__ = "0.1.0"
