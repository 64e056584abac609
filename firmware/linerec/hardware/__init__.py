"""The hardware boundary: GPIO pins (hook, ring, LEDs, button) and ALSA audio.

Everything above this room sees 8 kHz int16 frames, hook/ring events and LED patterns; the
real board (`gpio.py`, `audio.py`) and the simulated line (`linerec.sim`) look the same.
"""
