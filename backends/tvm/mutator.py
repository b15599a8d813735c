"""``mutator_pass``: run a Relax ``PyExprMutator`` as a module pass (the gelu expansion and the
Winograd rewrite both use it)."""

from __future__ import annotations


def mutator_pass(name: str, mutator_class):
    """A module pass that runs ``mutator_class`` (a Relax ``PyExprMutator``) over every Relax
    function of the module; the functions it adds (``call_te``) come with the result."""
    import tvm
    from tvm import relax

    @tvm.transform.module_pass(opt_level=0, name=name)
    def run(mod, _ctx):
        mutator = mutator_class(mod)
        for gv, func in mod.functions_items():
            if isinstance(func, relax.Function):
                mutator.builder_.update_func(gv, mutator.visit_expr(func))
        return mutator.builder_.get()

    return run
