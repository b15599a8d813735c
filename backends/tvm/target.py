"""What the TVM backend needs to know about the machine and the target, shared by the compiler
and the runner: the build CPU (LLVM's name, SIMD width, ISA flags), the llvm and cuda target
dicts, and the thread pool size. Nothing here imports a schedule, so loading a library to
run it does not import the compiler."""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from typing import Any

from resdsl.errors import ResdslError


@dataclass(frozen=True)
class CpuInfo:
    """What the schedules need to know about the build machine's CPU."""

    mcpu: str  # LLVM's name for it, e.g. "skylake-avx512"
    lanes: int  # float32 lanes of its widest vector unit
    cores: int


@functools.lru_cache(maxsize=1)
def host_cpu() -> CpuInfo:
    """The machine we compile on: LLVM's CPU name and the float32 SIMD width from /proc/cpuinfo."""
    from tvm.target import codegen

    flags = cpu_flags()
    lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags else 4
    return CpuInfo(str(codegen.llvm_get_system_cpu()), lanes, os.cpu_count() or 1)


def cpu_flags() -> set[str]:
    """This machine's CPU feature flags, as /proc/cpuinfo lists them (empty elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


ISA_PREFIXES = ("sse", "ssse", "avx", "fma", "f16c", "bmi", "amx")
# /proc/cpuinfo names that are not LLVM's once punctuation is dropped.
_CPUINFO_ALIASES = {"pni": "sse3", "bmi1": "bmi"}


def isa_name(flag: str) -> str:
    """One spelling for an instruction set: /proc/cpuinfo says ``sse4_2``, ``avx512_bf16``,
    ``pni``; LLVM says ``sse4.2``, ``avx512bf16``, ``sse3``. Both become ``sse42`` etc."""
    name = re.sub(r"[^a-z0-9]", "", flag.lower())
    return _CPUINFO_ALIASES.get(name, name)


def isa_flags(tdict: dict[str, Any] | None = None) -> list[str]:
    """The instruction-set extensions a library for ``tdict`` may use (a machine that lacks
    one would die of an illegal instruction, so the runner checks first): for the
    build machine's CPU what /proc/cpuinfo lists, for another ``--mcpu`` what LLVM
    enables for it."""
    if tdict is None or tdict.get("mcpu") == host_cpu().mcpu:
        flags = cpu_flags()
    else:
        import tvm
        from tvm.target import codegen

        flags = set(codegen.llvm_get_cpu_features(tvm.target.Target(tdict)))
    return sorted({isa_name(f) for f in flags if f.startswith(ISA_PREFIXES)})


def vnni_lanes(tdict: dict[str, Any]) -> int:
    """The int32 lanes of the ``vpdpbusd`` an llvm library for ``tdict`` may use: 16 with AVX-512 VNNI
    (zmm), 8 with AVX-VNNI only (ymm, e.g. ``--mcpu alderlake``), 0 without either. The int8
    kernels (``rules.int8``) need one; plain AVX2 has no non-saturating u8 x s8 dot product
    (``vpmaddubsw`` saturates at int16), so there an int8 graph runs float kernels on dequantized
    weights. From the ISA flags, not the vector width: LLVM would have to split a 512-bit
    ``vpdpbusd`` on a 256-bit CPU, and cannot (it aborts the process)."""
    if tdict.get("kind") != "llvm":
        return 0
    flags = set(isa_flags(tdict))
    if "avx512vnni" in flags and "avx512f" in flags:
        return 16
    return 8 if "avxvnni" in flags else 0


def has_vnni(tdict: dict[str, Any]) -> bool:
    """Whether an llvm library for ``tdict`` gets int8 kernels (``vnni_lanes``)."""
    return vnni_lanes(tdict) > 0


def llvm_target(cpu: CpuInfo | None = None, mcpu: str | None = None) -> dict[str, Any]:
    """The llvm target for this machine, or for the CPU family ``mcpu`` (LLVM's name, e.g.
    ``haswell``, ``skylake-avx512``, ``x86-64-v3``): mcpu lets LLVM use the whole vector unit."""
    cpu = cpu or host_cpu()
    if mcpu is not None:
        from tvm.target import codegen

        if not codegen.llvm_is_valid_cpu(mcpu, codegen.llvm_get_system_triple()):
            raise ResdslError(
                f"LLVM does not know the CPU {mcpu!r}",
                hint=f"use an LLVM CPU name such as x86-64-v3, haswell, skylake-avx512 (this one is {cpu.mcpu})",
            )
    return {"kind": "llvm", "mcpu": mcpu or cpu.mcpu, "num-cores": cpu.cores}


def lanes_of(target) -> int:
    """float32 lanes of ``target``'s vector unit (from its mcpu; 4 when unknown)."""
    from tvm.target import codegen

    try:
        return max(4, int(codegen.llvm_get_vector_width(target)) // 32)
    except Exception:  # an mcpu LLVM does not know: plain SSE is always there
        return 4


def cuda_target(arch: str) -> dict[str, Any]:
    """The cuda target as JSON; it names its host so compiling needs no GPU."""
    if not re.fullmatch(r"sm_\d+[a-z]?", arch or ""):
        raise ResdslError(f"invalid CUDA architecture {arch!r}", hint="use e.g. --arch sm_80, sm_89, sm_90")
    return {"kind": "cuda", "arch": arch, "host": {"kind": "llvm"}}


def use_all_cores() -> None:
    """Give TVM's thread pool every core this process may use, as ONNX Runtime does.

    TVM sizes its pool at half the hardware threads (it assumes hyper-threading), so on
    a 2-core machine it ran our kernels on one core. The pool reads TVM_NUM_THREADS when
    it first starts; a value the user set is kept.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    os.environ.setdefault("TVM_NUM_THREADS", str(cores))
