"""The exported file's text: a module tree from the parameter names, a forward from the graph.

Parameter names are PyTorch state_dict names, so the tree follows from them: a layer
whose parameters are ``layer1.0.conv1.weight`` is ``self.layer1[0].conv1``, scopes
whose children are 0, 1, ... are ``nn.ModuleList``s and other scopes ``Scope``s, and
a free parameter (``cls_token``) is an ``nn.Parameter`` of its scope. Modules are
declared in the order the graph first uses them, which is the order torchvision
declares its layers in, so ``state_dict()`` lists the same keys in the same order.
"""

from __future__ import annotations

import builtins
import keyword
import re
from dataclasses import dataclass, field

import numpy as np

from resdsl.errors import ResdslError
from resdsl.ir import BUFFER, CONST, Graph, Node
from resdsl.registry import SOURCES
from resdsl.shapes import Shape, fmt

from .ops import HELPER_NEEDS, LAYERS, TORCH_OPS, lit

# Attributes every nn.Module has: a layer or scope of that name would shadow one.
RESERVED = frozenset(
    "T_destination add_module apply bfloat16 buffers call_super_init children compile cpu cuda double dump_patches "
    "eval extra_repr float forward get_buffer get_extra_state get_parameter get_submodule half ipu load_state_dict "
    "modules mtia named_buffers named_children named_modules named_parameters parameters register_backward_hook "
    "register_buffer register_forward_hook register_forward_pre_hook register_full_backward_hook "
    "register_full_backward_pre_hook register_load_state_dict_post_hook register_load_state_dict_pre_hook "
    "register_module register_parameter register_state_dict_post_hook register_state_dict_pre_hook requires_grad_ "
    "set_extra_state set_submodule share_memory state_dict to to_empty train type xpu zero_grad training".split()
)
CONST_INLINE = 1 << 16  # the most values a non-scalar constant may have to be written into the file


@dataclass
class _Tree:
    """A scope of the module tree: children by name in first-use order, or a leaf."""

    children: dict[str, _Tree] = field(default_factory=dict)
    leaf: str | None = None  # constructor text of a layer, or of an nn.Parameter
    kind: str = "scope"  # "scope", "layer", "param", "buffer"


def _class_name(model: str) -> str:
    name = re.sub(r"\W", "_", model)
    name = name[:1].upper() + name[1:]
    return name if name.isidentifier() and not keyword.iskeyword(name) else f"Model_{name}"


class Exporter:
    """Turns a canonical graph into the exported file's text (``source()``)."""

    def __init__(self, graph: Graph) -> None:
        self.g = graph
        self.order = graph.topo_order()
        self.helpers: set[str] = set()
        self.layer_of: dict[int, str] = {}  # node id -> the layer path rendering it
        self.access: dict[str, str] = {}  # tree path -> expression ("self.layer1[0]")
        self.tree = _Tree()
        self.consts: list[str] = []  # __init__ lines of the non-scalar constants
        self.const_expr: dict[str, str] = {}
        self._find_layers()
        self._build_tree()

    # ------------------------------------------------------------ layers and tree

    def _layer_candidate(self, n: Node) -> tuple[str, dict[str, int]] | None:
        """The layer path and its parameter nodes by role, when ``n``'s parameters are exactly a layer's."""
        spec = LAYERS.get(n.op)
        if spec is None or not _layer_fits(n, self.g.node(self.g.args(n.id)[0]).shape):
            return None
        args = self.g.args(n.id)
        params: dict[str, int] = {}
        prefix = None
        for pos, src in enumerate(args):
            node = self.g.node(src)
            if pos not in spec.roles:
                if node.op == "param":
                    return None
                continue
            pname = node.attrs["name"] if node.op == "param" else None
            if pname is None or self.g.param_kind[pname] == CONST or "." not in pname:
                return None
            head, role = pname.rsplit(".", 1)
            if role != spec.roles[pos] or (prefix is not None and head != prefix):
                return None
            prefix = head
            params[role] = src
        if len(params) < spec.required:
            return None
        return prefix, params

    def _find_layers(self) -> None:
        groups: dict[str, list[Node]] = {}
        params_of: dict[str, dict[str, int]] = {}
        bad: set[str] = set()
        for nid in self.order:
            n = self.g.node(nid)
            found = self._layer_candidate(n)
            if found is None:
                continue
            prefix, params = found
            if prefix in groups:
                first = groups[prefix][0]
                same_input = (
                    self.g.node(self.g.args(nid)[0]).shape[1:] == self.g.node(self.g.args(first.id)[0]).shape[1:]
                )
                if (n.op, n.attrs, params) != (first.op, first.attrs, params_of[prefix]) or not same_input:
                    bad.add(prefix)
            groups.setdefault(prefix, []).append(n)
            params_of[prefix] = params
        names = {self.g.node(p).attrs["name"] for ps in params_of.values() for p in ps.values()}
        for prefix, nodes in groups.items():
            users = {u for p in params_of[prefix].values() for u, _ in self.g.uses(p)}
            if users != {n.id for n in nodes} or prefix in self.g.parameters:
                bad.add(prefix)
            # a layer cannot also be a scope: "fc" with "fc.weight" and a parameter "fc.extra"
            if any(k.startswith(prefix + ".") and k not in names for k in self.g.parameters):
                bad.add(prefix)
        for prefix, nodes in groups.items():
            if prefix not in bad:
                self.layer_of.update({n.id: prefix for n in nodes})
        self.layer_params = {prefix: params_of[prefix] for prefix in groups if prefix not in bad}

    def _insert(self, path: str, kind: str, leaf: str) -> None:
        parts = path.split(".")
        node = self.tree
        for i, part in enumerate(parts):
            here = ".".join(parts[: i + 1])
            # what nn.Module.add_module accepts and a string literal can hold (torchvision's RegNet has "block1-0")
            if not part or part.startswith("_") or part in RESERVED or not re.fullmatch(r"[A-Za-z0-9_\-]+", part):
                raise ResdslError(
                    f"cannot export to PyTorch: {here!r} is not a usable module or attribute name",
                    hint="rename the layer or scope (letters, digits, '_' and '-', not a method of nn.Module)",
                )
            if node.kind != "scope":
                raise ResdslError(f"cannot export to PyTorch: {'.'.join(parts[:i])!r} is a parameter and a scope")
            node = node.children.setdefault(part, _Tree())
        if node.kind != "scope" or node.children:
            raise ResdslError(f"cannot export to PyTorch: {path!r} is both a {kind} and a scope")
        node.kind, node.leaf = kind, leaf

    def _build_tree(self) -> None:
        seen: set[str] = set()
        param_nodes = {self.g.node(i).attrs["name"]: i for i in self.order if self.g.node(i).op == "param"}
        ordered: list[int] = []
        for nid in self.order:  # parameters in the order their first user runs
            ordered += [a for a in self.g.args(nid) if self.g.node(a).op == "param" and a not in ordered]
        ordered += [i for i in param_nodes.values() if i not in ordered]  # unused parameters still load
        layered = {p: prefix for prefix, ps in self.layer_params.items() for p in ps.values()}
        for pid in ordered:
            pname = self.g.node(pid).attrs["name"]
            if pid in layered:
                prefix = layered[pid]
                if prefix not in seen:
                    seen.add(prefix)
                    user = next(self.g.node(u) for u, _ in self.g.uses(pid))
                    x = self.g.node(self.g.args(user.id)[0]).shape
                    shapes = {
                        role: self.g.parameters[self.g.node(p).attrs["name"]].shape
                        for role, p in self.layer_params[prefix].items()
                    }
                    ctor = LAYERS[user.op].make(user, shapes, x)
                    if ctor.startswith("ChannelLayerNorm"):
                        self.helpers.add("ChannelLayerNorm")
                    self._insert(prefix, "layer", ctor)
                continue
            kind = self.g.param_kind[pname]
            if kind == CONST:
                self._constant(pname)
                continue
            value = self.g.parameters[pname]
            if kind == BUFFER:
                self._insert(pname, "buffer", _tensor_init(value))
            else:
                self._insert(pname, "param", f"nn.Parameter({_tensor_init(value)})")
        self._name_paths(self.tree, "self", "")

    def _constant(self, pname: str) -> None:
        value = self.g.parameters[pname]
        if value.ndim == 0:
            self.const_expr[pname] = lit(float(value))
            return
        if value.size > CONST_INLINE:
            raise ResdslError(
                f"cannot export to PyTorch: constant {pname!r} has {value.size:,} values, "
                f"more than the {CONST_INLINE:,} written into a file",
                hint="make it a parameter (nn.parameter) so that it travels in the state_dict",
            )
        attr = "const_" + re.sub(r"\W", "_", pname)
        self.consts.append(f'self.register_buffer("{attr}", {_exact_tensor(value)}, persistent=False)')
        self.const_expr[pname] = f"self.{attr}"

    def _name_paths(self, tree: _Tree, expr: str, path: str) -> None:
        listed = _is_list(tree)
        for name, child in tree.children.items():
            if listed:
                sub = f"{expr}[{name}]"
            elif name.isidentifier():
                sub = f"{expr}.{name}"
            else:
                sub = f'getattr({expr}, "{name}")'
            full = f"{path}.{name}" if path else name
            self.access[full] = sub
            self._name_paths(child, sub, full)

    # ------------------------------------------------------------ Context

    def module(self, node: Node) -> str | None:
        prefix = self.layer_of.get(node.id)
        return self.access[prefix] if prefix is not None else None

    def helper(self, name: str) -> None:
        self.helpers.add(name)

    # ------------------------------------------------------------ text

    def _ctor(self, tree: _Tree, indent: int) -> str:
        """A constructor expression whose continuation lines are indented by ``indent``."""
        if tree.kind != "scope":
            return tree.leaf or ""
        pad, inner = " " * indent, " " * (indent + 4)
        if _is_list(tree):
            items = "".join(f"{inner}{self._ctor(c, indent + 4)},\n" for c in tree.children.values())
            return f"nn.ModuleList([\n{items}{pad}])"
        if all(n.isidentifier() for n in tree.children):
            items = "".join(f"{inner}{n}={self._ctor(c, indent + 4)},\n" for n, c in tree.children.items())
            return f"Scope(\n{items}{pad})"
        items = "".join(f'{inner}"{n}": {self._ctor(c, indent + 4)},\n' for n, c in tree.children.items())
        return f"Scope(**{{\n{items}{pad}}})"

    def init_lines(self) -> list[str]:
        lines = []
        for name, child in self.tree.children.items():
            target = self.access[name]
            if child.kind == "buffer":
                lines.append(f'self.register_buffer("{name}", {child.leaf})')
            elif target.startswith("getattr("):
                lines.append(f'self.add_module("{name}", {self._ctor(child, 0)})')
            else:
                lines.append(f"{target} = {self._ctor(child, 0)}")
        return lines + self.consts

    def forward_lines(self) -> tuple[list[str], list[str], list[str]]:
        """The forward's parameters, body lines and returned names."""
        names: dict[int, str] = {}
        taken = {"self", "torch", "nn", "F", "math", *self.helpers_all()}
        args = []
        for nid in self.g.inputs:
            names[nid] = _variable(self.g.node(nid).attrs["name"], taken)
            args.append(names[nid])
        body = []
        for nid in self.order:
            n = self.g.node(nid)
            if n.op in SOURCES:
                if n.op == "param":
                    pname = n.attrs["name"]
                    names[nid] = self.const_expr.get(pname) or self.access.get(pname, "")
                continue
            render = TORCH_OPS.get(n.op)
            if render is None:
                raise ResdslError(f"{n.name}: op {n.op!r} has no PyTorch rendering", n.loc, origins=n.origins)
            expr = render(self, n, [names[a] for a in self.g.args(nid)])
            names[nid] = _variable(n.name, taken)
            body.append(f"{names[nid]} = {expr}  # {fmt(n.shape)}" if len(expr) < 80 else f"{names[nid]} = {expr}")
        outs = [names[nid] for _, nid in self.g.outputs]
        return args, body, outs

    def helpers_all(self) -> list[str]:
        return sorted(self.helpers | {d for h in self.helpers for d in HELPER_NEEDS.get(h, ())})


def _layer_fits(n: Node, x: Shape) -> bool:
    """PyTorch's batch norm layers take rank 2 to 5 (BatchNorm1d/2d/3d)."""
    return n.op != "batch_norm" or 2 <= len(x) <= 5


def _is_list(tree: _Tree) -> bool:
    names = list(tree.children)
    return bool(names) and names == [str(i) for i in range(len(names))]


def _variable(name: str, taken: set[str]) -> str:
    base = re.sub(r"\W", "_", name)
    if not base.isidentifier() or keyword.iskeyword(base) or hasattr(builtins, base):
        base = f"v_{base}"
    out, i = base, 1
    while out in taken:
        i += 1
        out = f"{base}_{i}"
    taken.add(out)
    return out


def _tensor_init(value: np.ndarray) -> str:
    """A free parameter's initial value as resdsl drew it: zeros, ones, a constant, or normal with its spread."""
    shape = lit(tuple(int(d) for d in value.shape))
    if value.size and np.all(value == value.flat[0]):
        v = float(value.flat[0])
        return (
            f"torch.zeros({shape})"
            if v == 0
            else f"torch.ones({shape})"
            if v == 1
            else f"torch.full({shape}, {lit(v)})"
        )
    std = float(np.std(value))
    return f"torch.randn({shape}) * {float(f'{std:.3g}')!r}"


def _exact_tensor(value: np.ndarray) -> str:
    shape = lit(tuple(int(d) for d in value.shape))
    if np.all(value == value.flat[0]):
        return f"torch.full({shape}, {lit(float(value.flat[0]))})"
    flat = ", ".join(repr(float(v)) for v in value.astype(np.float32).ravel())
    return f"torch.tensor([{flat}]).reshape{shape}"
