"""Pickles as Python 2 wrote them, so readers are tested on the real byte layout.

Python 2's `str` is a byte string: the official 3DPW files store dict keys, strings and
numpy buffers as `SHORT_BINSTRING` / `BINSTRING` opcodes and name numpy's reconstructor
`numpy.core.multiarray`. Python 3 can only load such a pickle with `encoding='latin1'`
(or 'bytes'); a Python 3 protocol-2 pickle loads without it, so it cannot test that.
"""

from __future__ import annotations

import io
import pickle
import struct
from typing import Any


class _Py2Pickler(pickle._Pickler):  # the pure-Python pickler exposes its opcode writers
    dispatch = pickle._Pickler.dispatch.copy()

    def _save_py2_str(self, obj: bytes) -> None:
        # Not memoised: text is encoded to a temporary bytes object whose id is reused.
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)

    def _save_text(self, obj: str) -> None:
        self._save_py2_str(obj.encode("latin1"))

    dispatch[bytes] = _save_py2_str
    dispatch[str] = _save_text

    def save_global(self, obj: Any, name: str | None = None) -> None:
        module = getattr(obj, "__module__", "") or ""
        if module.startswith("numpy._core"):
            module = module.replace("numpy._core", "numpy.core", 1)
            qualified = name or obj.__qualname__
            self.write(pickle.GLOBAL + f"{module}\n{qualified}\n".encode("ascii"))
            self.memoize(obj)
            return
        super().save_global(obj, name)


def dumps_py2(obj: Any) -> bytes:
    """Protocol-2 pickle bytes with Python 2 byte strings (latin-1 text)."""
    buffer = io.BytesIO()
    _Py2Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue()
