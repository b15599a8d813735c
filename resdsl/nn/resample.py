"""Interpolation (torch.nn.functional.interpolate) to a size or by an integer-exact scale factor."""

from __future__ import annotations

from . import check
from .check import dsl
from .tensor import Tensor, _node, _tensor


@dsl
def interpolate(
    x: Tensor,
    size: int | tuple[int, int] | None = None,
    scale_factor: float | tuple[float, float] | None = None,
    mode: str = "nearest",
    *,
    align_corners: bool | None = None,
    name: str | None = None,
) -> Tensor:
    """Resize H and W: nearest or bilinear, PyTorch's coordinate rules. A scale factor must give
    whole output sizes (2 on a 7x7 map: 14x14), so the same mapping is exact in every backend."""
    fn = "interpolate"
    x = _tensor(x, f"nn.{fn}")
    if len(x.shape) != 4:
        raise check.fail(fn, f"expects an NCHW input, got {x.shape}")
    check.choice(fn, "mode", mode, ("nearest", "bilinear"))
    if (size is None) == (scale_factor is None):
        raise check.fail(fn, "give exactly one of size= and scale_factor=")
    if mode == "nearest" and align_corners:
        raise check.fail(fn, "align_corners applies to bilinear only (as in PyTorch)")
    h, w = x.shape[2:]
    if size is not None:
        out = check.pair(fn, "size", size, 1)
    else:
        factors = scale_factor if isinstance(scale_factor, tuple | list) else (scale_factor, scale_factor)
        sf = [check.number(fn, "scale_factor", f) for f in factors]
        out = tuple(int(d * f) for d, f in zip((h, w), sf))
        if any(abs(d * f - o) > 1e-9 or o <= 0 for d, f, o in zip((h, w), sf, out)):
            raise check.fail(fn, f"scale_factor={scale_factor} does not give whole sizes from {h}x{w}", "give size=")
    return _node(
        "resize", [x], {"size": out, "mode": mode, "align_corners": bool(align_corners)}, name=check.name(fn, name)
    )


@dsl
def upsample(x: Tensor, scale_factor: int = 2, mode: str = "nearest", *, name: str | None = None) -> Tensor:
    """torch.nn.Upsample(scale_factor=...): interpolate by a whole factor."""
    return interpolate(x, scale_factor=check.number("upsample", "scale_factor", scale_factor), mode=mode, name=name)
