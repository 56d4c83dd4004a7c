"""Unowned array views: reference counting off where the caller owns every array.

numba counts references to every array it passes: an atomic add on the array's ``meminfo`` at
the entry of each compiled call that takes it (and for each view made of it), and an atomic
subtract at each return.  In the small layers of tabular networks a training step makes a few
hundred such calls (per product, per task, per layer view), and those atomics were a quarter
of the step's time (perf: 20% of the samples in ``NRT_incref``/``NRT_decref``; a tabular
32-64-64-1 step 27.4 µs before unowned views, 20.5 µs after).

An unowned view has the same data pointer, shape and strides but a null ``meminfo``, so
numba's increments and decrements of it (and of every view taken of it) do nothing.  It is
safe exactly where fastbp uses it: at the top of a kernel called from Python, whose arguments
the Python caller keeps alive for the whole call, and whose views never outlive that call
(never returned, never stored).
"""
from numba import types
from numba.core import cgutils
from numba.core.typing import signature
from numba.extending import intrinsic


@intrinsic
def unowned(typingctx, *arrays):
    """``unowned(a)`` -> a view of array ``a`` without owner; ``unowned(a, b, ...)`` -> a
    tuple of them."""
    if not arrays or not all(isinstance(a, types.Array) for a in arrays):
        return None

    def codegen(context, builder, sig, args):
        views = []
        for ty, value in zip(arrays, cgutils.unpack_tuple(builder, args[0])):
            src = context.make_array(ty)(context, builder, value)
            view = context.make_array(ty)(context, builder)
            for field in ("nitems", "itemsize", "data", "shape", "strides"):
                setattr(view, field, getattr(src, field))
            view.meminfo = cgutils.get_null_value(view.meminfo.type)
            view.parent = cgutils.get_null_value(view.parent.type)
            views.append(view._getvalue())
        if len(views) == 1:
            return views[0]
        return context.make_tuple(builder, sig.return_type, views)

    result = arrays[0] if len(arrays) == 1 else types.Tuple(arrays)
    return signature(result, types.StarArgTuple(arrays)), codegen


# -- reshaped views without numba's checks ---------------------------------------------------
# numba's ``reshape`` compiles its error path (a message built from the shapes: ``str``/``repr``
# of tuples, string concatenation) into every kernel that reshapes, about 2 s of a cold start;
# the callers here own the shapes, so these views take them as given.

def _view(context, builder, src_ty, src, dst_ty, shape):
    """A view of C-contiguous ``src`` with ``shape`` (LLVM values) and C strides: the same data
    (read as ``dst_ty``'s elements, of the same size) and owner (a borrowed reference, as
    numba's own views)."""
    from numba.core.imputils import impl_ret_borrowed
    a = context.make_array(src_ty)(context, builder, src)
    v = context.make_array(dst_ty)(context, builder)
    itemsize = a.itemsize
    strides, step = [], itemsize
    for s in reversed(shape):
        strides.insert(0, step)
        step = builder.mul(step, s)
    data = builder.bitcast(a.data, context.get_value_type(dst_ty.dtype).as_pointer())
    context.populate_array(v, data=data, shape=shape, strides=strides, itemsize=itemsize,
                           meminfo=a.meminfo, parent=a.parent)
    return impl_ret_borrowed(context, builder, dst_ty, v._getvalue())


@intrinsic
def flat(typingctx, a):
    """A C-contiguous array as 1-D (``a.reshape(a.size)``, unchecked)."""
    if not isinstance(a, types.Array) or a.layout != "C":
        return None
    ty = a.copy(ndim=1)

    def codegen(context, builder, sig, args):
        n = context.make_array(a)(context, builder, args[0]).nitems
        return _view(context, builder, a, args[0], ty, [n])
    return signature(ty, a), codegen


@intrinsic
def matrix(typingctx, a, rows, cols):
    """A 1-D C-contiguous array as ``(rows, cols)`` (``a.reshape((rows, cols))``, unchecked:
    ``rows·cols`` must be ``a.size``)."""
    if not isinstance(a, types.Array) or a.layout != "C" or a.ndim != 1:
        return None
    ty = a.copy(ndim=2)

    def codegen(context, builder, sig, args):
        shape = [context.cast(builder, v, t, types.intp) for v, t in zip(args[1:], sig.args[1:])]
        return _view(context, builder, a, args[0], ty, shape)
    return signature(ty, a, rows, cols), codegen


# -- the bits of floats, without numba's ``view`` ------------------------------------------------
# ``a.view(np.uint32)`` compiles numba's generic view with its checks (~1.4 s of a cold start in
# every kernel that uses it); these reinterpret a float array's memory, or one value, as the
# unsigned integers of the same width.

_UINT = {32: types.uint32, 64: types.uint64}


@intrinsic
def float_bits(typingctx, a):
    """A 1-D C-contiguous float32/float64 array's memory as uint32/uint64 (a view: same
    data, owner and shape)."""
    if not (isinstance(a, types.Array) and a.ndim == 1 and a.layout == "C"
            and isinstance(a.dtype, types.Float) and a.dtype.bitwidth in _UINT):
        return None
    ty = a.copy(dtype=_UINT[a.dtype.bitwidth])

    def codegen(context, builder, sig, args):
        n = context.make_array(a)(context, builder, args[0]).nitems
        return _view(context, builder, a, args[0], ty, [n])
    return signature(ty, a), codegen


@intrinsic
def bits_float(typingctx, u):
    """The float32/float64 whose bits are the uint32/uint64 ``u``."""
    if not (isinstance(u, types.Integer) and not u.signed and u.bitwidth in _UINT):
        return None
    ty = types.float32 if u.bitwidth == 32 else types.float64

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], context.get_value_type(ty))
    return signature(ty, u), codegen
