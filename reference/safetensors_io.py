"""Safetensors reading and writing with nothing but torch (and the standard library).

Format (https://github.com/huggingface/safetensors): 8 bytes little-endian u64 N, then N bytes of
JSON header {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}},
then the data; offsets are relative to the end of the header. Everything is little-endian.

Reading: `load_file(path)`, `load_checkpoint_tensors(dir)` (model.safetensors or the shards named in
model.safetensors.index.json), `iter_checkpoint_tensors(dir)` (one tensor at a time, memory-mapped,
for large checkpoints). BF16 is decoded through an int16 view, so no numpy is needed.

Writing: `save_file(tensors, path, metadata)` for any of the dtypes below, and
`save_vector_file(path, vectors, singular_values, metadata)` for jacsteer's vector files
(CONTRACT.md section 3: F32 `vectors` [n, d], F32 `singular_values` [n], string `__metadata__`
with format "jacsteer.vectors.v1"). Files are written to a temporary name and renamed, so a failed
write leaves no partial file.

`read_vector(spec)` reads one row of a vector file given as FILE (row 0) or FILE:ROW;
`read_vectors(spec)` reads FILE:ROW as one row and FILE as all rows (jacsteer's --init).
"""
from __future__ import annotations

import ctypes
import json
import mmap
import os
import struct
import sys
from typing import Dict, Iterator, Mapping, Optional, Tuple

import torch

VECTOR_FORMAT = "jacsteer.vectors.v1"

# safetensors dtype name -> (torch dtype used to hold the raw bytes, torch dtype of the result)
_DTYPES: Dict[str, Tuple[torch.dtype, torch.dtype]] = {
    "F64": (torch.float64, torch.float64),
    "F32": (torch.float32, torch.float32),
    "F16": (torch.float16, torch.float16),
    "BF16": (torch.int16, torch.bfloat16),  # frombuffer on int16, then a bit-level view
    "I64": (torch.int64, torch.int64),
    "I32": (torch.int32, torch.int32),
    "I16": (torch.int16, torch.int16),
    "I8": (torch.int8, torch.int8),
    "U8": (torch.uint8, torch.uint8),
    "BOOL": (torch.bool, torch.bool),
}
_NAMES: Dict[torch.dtype, str] = {v[1]: k for k, v in _DTYPES.items()}
_ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}

if sys.byteorder != "little":  # pragma: no cover - every machine we run on is little-endian
    raise RuntimeError("safetensors_io assumes a little-endian host")


class SafetensorsError(ValueError):
    """A malformed or unsupported file; the message names the file (and tensor)."""


# ------------------------------------------------------------------------------------------------
# reading


def read_header(path: str) -> Tuple[dict, int]:
    """(header JSON, byte offset of the data section)."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) != 8:
                raise SafetensorsError(f"{path}: too short to be a safetensors file")
            (n,) = struct.unpack("<Q", head)
            size = os.fstat(f.fileno()).st_size
            if n > size - 8 or n > 100_000_000:
                raise SafetensorsError(f"{path}: header length {n} does not fit in a {size}-byte file")
            raw = f.read(n)
    except OSError as e:
        raise SafetensorsError(f"{path}: cannot read ({e.strerror or e})") from e
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SafetensorsError(f"{path}: header is not valid JSON ({e})") from e
    if not isinstance(header, dict):
        raise SafetensorsError(f"{path}: header is not a JSON object")
    return header, 8 + n


def read_metadata(path: str) -> Dict[str, str]:
    header, _ = read_header(path)
    meta = header.get("__metadata__") or {}
    return dict(meta)


def _check_entry(path: str, name: str, info: dict, data_len: int) -> Tuple[str, list, int, int]:
    if not isinstance(info, dict):
        raise SafetensorsError(f"{path}: tensor {name}: header entry is not an object")
    dt = info.get("dtype")
    if dt not in _DTYPES:
        raise SafetensorsError(f"{path}: tensor {name}: unsupported dtype {dt!r}")
    shape = info.get("shape")
    if not isinstance(shape, list) or not all(isinstance(s, int) and s >= 0 for s in shape):
        raise SafetensorsError(f"{path}: tensor {name}: bad shape {shape!r}")
    offs = info.get("data_offsets")
    if not (isinstance(offs, list) and len(offs) == 2 and all(isinstance(o, int) for o in offs)):
        raise SafetensorsError(f"{path}: tensor {name}: bad data_offsets {offs!r}")
    begin, end = offs
    count = 1
    for s in shape:
        count *= s
    if not (0 <= begin <= end <= data_len) or end - begin != count * _ITEMSIZE[dt]:
        raise SafetensorsError(
            f"{path}: tensor {name}: data_offsets {offs} do not match dtype {dt} shape {shape} "
            f"(data section is {data_len} bytes)"
        )
    return dt, shape, begin, end


class SafetensorsFile:
    """A memory-mapped safetensors file; `get(name)` returns a tensor that owns its memory."""

    def __init__(self, path: str):
        self.path = path
        self.header, self.data_start = read_header(path)
        self.metadata: Dict[str, str] = dict(self.header.get("__metadata__") or {})
        self._f = open(path, "rb")
        size = os.fstat(self._f.fileno()).st_size
        self.data_len = size - self.data_start
        # ACCESS_COPY gives a writable (copy-on-write) buffer, which torch.frombuffer wants, and
        # still only pages in what is read.
        self._mm = mmap.mmap(self._f.fileno(), 0, access=mmap.ACCESS_COPY) if size > 0 else None

    def keys(self):
        return [k for k in self.header.keys() if k != "__metadata__"]

    def info(self, name: str) -> Tuple[str, list]:
        dt, shape, _, _ = _check_entry(self.path, name, self.header[name], self.data_len)
        return dt, shape

    def get(self, name: str) -> torch.Tensor:
        if name not in self.header or name == "__metadata__":
            raise SafetensorsError(f"{self.path}: no tensor named {name}")
        dt, shape, begin, end = _check_entry(self.path, name, self.header[name], self.data_len)
        raw_dtype, dtype = _DTYPES[dt]
        count = (end - begin) // _ITEMSIZE[dt]
        if count == 0:
            return torch.empty(shape, dtype=dtype)
        offset = self.data_start + begin
        if offset % _ITEMSIZE[dt] == 0:
            t = torch.frombuffer(self._mm, dtype=raw_dtype, count=count, offset=offset)
        else:  # misaligned (legal in the format, rare in practice): copy the bytes first
            t = torch.frombuffer(bytearray(self._mm[offset:offset + end - begin]), dtype=raw_dtype)
        if raw_dtype != dtype:
            t = t.view(dtype)
        # clone: the result must not alias the mapping, which close() releases
        return t.reshape(shape).clone()

    def close(self):
        if self._mm is not None:
            self._mm.close()
            self._mm = None
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def load_file(path: str) -> Dict[str, torch.Tensor]:
    """All tensors of one safetensors file."""
    with SafetensorsFile(path) as f:
        return {k: f.get(k) for k in f.keys()}


def checkpoint_files(model_dir: str) -> Dict[str, str]:
    """tensor name -> file path, from model.safetensors.index.json or model.safetensors."""
    index = os.path.join(model_dir, "model.safetensors.index.json")
    single = os.path.join(model_dir, "model.safetensors")
    if os.path.exists(index):
        try:
            with open(index, "r", encoding="utf-8") as f:
                weight_map = json.load(f).get("weight_map")
        except (OSError, json.JSONDecodeError, AttributeError) as e:
            raise SafetensorsError(f"{index}: cannot read ({e})") from e
        if not isinstance(weight_map, dict):
            raise SafetensorsError(f'{index}: missing "weight_map"')
        out = {}
        for name, file in weight_map.items():
            if not isinstance(file, str) or "/" in file or "\\" in file:
                raise SafetensorsError(f"{index}: tensor {name}: bad shard name {file!r}")
            out[name] = os.path.join(model_dir, file)
        return out
    if os.path.exists(single):
        header, _ = read_header(single)
        return {k: single for k in header if k != "__metadata__"}
    raise SafetensorsError(f"{model_dir}: no model.safetensors or model.safetensors.index.json")


def iter_checkpoint_tensors(model_dir: str) -> Iterator[Tuple[str, torch.Tensor]]:
    """(name, tensor) for every tensor of a checkpoint, one shard open at a time."""
    by_file: Dict[str, list] = {}
    for name, path in checkpoint_files(model_dir).items():
        by_file.setdefault(path, []).append(name)
    for path in sorted(by_file):
        if not os.path.exists(path):
            raise SafetensorsError(f"{path}: missing (named in model.safetensors.index.json)")
        with SafetensorsFile(path) as f:
            present = set(f.keys())
            for name in by_file[path]:
                if name not in present:
                    raise SafetensorsError(f"{path}: tensor {name} listed in the index is not in the file")
                yield name, f.get(name)


def load_checkpoint_tensors(model_dir: str) -> Dict[str, torch.Tensor]:
    return dict(iter_checkpoint_tensors(model_dir))


# ------------------------------------------------------------------------------------------------
# writing


def _tensor_bytes(name: str, t: torch.Tensor) -> Tuple[str, bytes]:
    t = t.detach().to("cpu").contiguous()
    if t.dtype not in _NAMES:
        raise SafetensorsError(f"tensor {name}: dtype {t.dtype} cannot be written")
    dt = _NAMES[t.dtype]
    nbytes = t.numel() * t.element_size()
    if nbytes == 0:
        return dt, b""
    return dt, raw_bytes(t)


def raw_bytes(t: torch.Tensor) -> bytes:
    """The little-endian bytes of a tensor's values (row-major), without numpy."""
    t = t.detach().to("cpu").contiguous()
    nbytes = t.numel() * t.element_size()
    return ctypes.string_at(t.data_ptr(), nbytes) if nbytes else b""


def save_file(tensors: Mapping[str, torch.Tensor], path: str, metadata: Optional[Mapping[str, str]] = None) -> None:
    """Write tensors (in the given order) with string metadata, atomically (temp file + rename)."""
    header: Dict[str, object] = {}
    if metadata:
        for k, v in metadata.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise SafetensorsError(f"{path}: metadata {k!r} must map a string to a string")
        header["__metadata__"] = dict(metadata)
    blobs = []
    offset = 0
    for name, t in tensors.items():
        dt, data = _tensor_bytes(name, t)
        header[name] = {"dtype": dt, "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    head = json.dumps(header, separators=(",", ":")).encode("utf-8")
    head += b" " * ((8 - len(head) % 8) % 8)  # pad so the data starts 8-byte aligned
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(struct.pack("<Q", len(head)))
            f.write(head)
            for b in blobs:
                f.write(b)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def save_vector_file(
    path: str,
    vectors: torch.Tensor,
    singular_values: Optional[torch.Tensor],
    metadata: Mapping[str, object],
    residuals: Optional[torch.Tensor] = None,
) -> None:
    """jacsteer vector file: F32 `vectors` [n, d], F32 `singular_values` [n], optional F32
    `residuals` [n] (||J^T J v - sigma^2 v||, as jacsteer writes), string metadata.

    Non-string metadata values are JSON-encoded (lists, numbers); `format` is always set.
    """
    if vectors.dim() != 2:
        raise SafetensorsError(f"{path}: vectors must be [n, d], got shape {list(vectors.shape)}")
    meta: Dict[str, str] = {}
    for k, v in metadata.items():
        meta[k] = v if isinstance(v, str) else json.dumps(v)
    meta["format"] = VECTOR_FORMAT
    tensors = {"vectors": vectors.detach().to("cpu", torch.float32)}
    if singular_values is not None:
        sv = singular_values.detach().to("cpu", torch.float32).reshape(-1)
        if sv.numel() != vectors.shape[0]:
            raise SafetensorsError(f"{path}: {sv.numel()} singular values for {vectors.shape[0]} vectors")
        tensors["singular_values"] = sv
    if residuals is not None:
        r = residuals.detach().to("cpu", torch.float32).reshape(-1)
        if r.numel() != vectors.shape[0]:
            raise SafetensorsError(f"{path}: {r.numel()} residuals for {vectors.shape[0]} vectors")
        tensors["residuals"] = r
    save_file(tensors, path, meta)


def parse_vector_spec(spec: str) -> Tuple[str, int]:
    """FILE or FILE:ROW -> (file, row). A trailing :digits is a row; anything else is part of the path."""
    head, sep, tail = spec.rpartition(":")
    if sep and tail.isdigit() and head:
        return head, int(tail)
    return spec, 0


def read_vector(spec: str) -> torch.Tensor:
    """One vector (float64, 1-D) from FILE[:ROW] (row 0 without one)."""
    path, row = parse_vector_spec(spec)
    return _row(spec, path, row)


def read_vectors(spec: str) -> torch.Tensor:
    """FILE:ROW -> that row as [1, d]; FILE -> all rows [n, d] (float64), as jacsteer's --init reads them."""
    head, sep, tail = spec.rpartition(":")
    if sep and tail.isdigit() and head:
        return _row(spec, head, int(tail)).unsqueeze(0)
    return _read_rows(spec, spec)


def _row(spec: str, path: str, row: int) -> torch.Tensor:
    t = _read_rows(spec, path)
    if not (0 <= row < t.shape[0]):
        raise SafetensorsError(f"{spec}: row {row} out of range (the file has {t.shape[0]} rows)")
    return t[row].clone()


def _read_rows(spec: str, path: str) -> torch.Tensor:
    """The `vectors` tensor (or the file's only tensor) as float64 [n, d]."""
    if not os.path.exists(path):
        raise SafetensorsError(f"{path}: no such file")
    with SafetensorsFile(path) as f:
        names = f.keys()
        if "vectors" in names:
            name = "vectors"
        elif len(names) == 1:
            name = names[0]
        else:
            raise SafetensorsError(f"{path}: no tensor named 'vectors' (and more than one tensor: {sorted(names)})")
        t = f.get(name).to(torch.float64)
    if t.dim() == 1:
        t = t.unsqueeze(0)
    if t.dim() != 2:
        raise SafetensorsError(f"{path}: tensor {name} has shape {list(t.shape)}, expected [n, d] or [d]")
    return t
