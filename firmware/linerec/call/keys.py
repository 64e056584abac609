"""What keys pressed on the line mean to the call: opt-out, and the PCI pause and resume codes.

Sans-IO: digits (with their times) in, actions out. The opt-out key counts only while the
caller may still refuse (the daemon says when: during the notice and a short window after).
A code is a short sequence of keys (e.g. `*1`) with no more than `gap` seconds between them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyAction:
    kind: str  # "opt_out", "pause" or "resume"
    t: float  # when the key or the code began


class KeyCodes:
    def __init__(
        self, *, opt_out_key: str, pause_code: str, resume_code: str, gap: float = 2.0
    ) -> None:
        self.opt_out_key = opt_out_key
        self.pause_code = pause_code
        self.resume_code = resume_code
        self.gap = gap
        self._keys: list[tuple[str, float, float]] = []  # (digit, start, end)

    def feed(self, digit: str, t: float, duration: float, *, opt_out_open: bool) -> list[KeyAction]:
        if opt_out_open and self.opt_out_key and digit == self.opt_out_key:
            self._keys.clear()
            return [KeyAction(kind="opt_out", t=t)]
        if self._keys and t - self._keys[-1][2] > self.gap:
            self._keys.clear()
        self._keys.append((digit, t, t + duration))
        del self._keys[:-8]
        typed = "".join(key for key, _, _ in self._keys)
        for kind, code in (("pause", self.pause_code), ("resume", self.resume_code)):
            if code and typed.endswith(code):
                began = self._keys[-len(code)][1]
                self._keys.clear()
                return [KeyAction(kind=kind, t=began)]
        return []
