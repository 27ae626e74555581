"""Copies train-sae's safetensors files with their F32 weights and biases stored as F16 (half the size; the loader widens
them back to float32). Metadata and other dtypes are kept.  usage: sae_to_f16.py SRC_DIR DST_DIR"""

import json
import struct
import sys
from pathlib import Path

import numpy as np


def convert(src: Path, dst: Path) -> None:
    raw = src.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    body = raw[8 + n :]
    out_header, chunks, offset = {}, [], 0
    for name, entry in header.items():
        if name == "__metadata__":
            out_header[name] = entry
            continue
        begin, end = entry["data_offsets"]
        data = body[begin:end]
        dtype = entry["dtype"]
        # Weights and biases only: activation frequencies go below F16's range (dead-latent checks read them).
        if dtype == "F32" and name.endswith(("weight", "bias")):
            data = np.frombuffer(data, dtype="<f4").astype("<f2").tobytes()
            dtype = "F16"
        out_header[name] = {"dtype": dtype, "shape": entry["shape"], "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    text = json.dumps(out_header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    dst.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(chunks))


if __name__ == "__main__":
    src_dir, dst_dir = Path(sys.argv[1]), Path(sys.argv[2])
    dst_dir.mkdir(parents=True, exist_ok=True)
    for src in sorted(src_dir.glob("[0-9]*.safetensors")):
        convert(src, dst_dir / src.name)
        print(f"{src} -> {dst_dir / src.name} ({(dst_dir / src.name).stat().st_size / 1e6:.2f} MB)")
