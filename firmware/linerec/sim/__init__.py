"""The simulated line: the sibling of `linerec.hardware` that scripted calls drive.

It produces the same pin edges and PCM frames a real line interface would, feeds audio
through the real ALSA library (file plugin), and records what the LEDs did.
"""
