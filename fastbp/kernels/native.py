"""Calls through a function address: compiled once, called from many kernels.

numba links the code of every function a kernel calls into that kernel, optimises the whole
again and emits its machine code again (``CPUCodeLibrary.finalize``), at every level of a call
chain.  fastbp's products (the register-tile micro-kernels and their task grid) sat five levels
below ``train_epoch``: their code was optimised and emitted at each of those levels on a cold
start, and the structured passes, the losses and the optimizers likewise.

A call made through a :class:`Native`'s stub instead is an indirect call to the callee's own
compiled code, whose address is a run-time argument: the caller's module holds one call
instruction, nothing is linked, and the callee is compiled (or loaded from the cache) once per
dtype.  The stub is a numba intrinsic typed with the callee's one *canonical* signature for the
dtype (a function of the dtype alone, so that a caller loaded from the cache in a fresh process
and the address the engine looks up agree without any record of the caller's compilation);
each argument is converted to that signature's type, and a conversion numba would refuse fails
the caller's typing with the argument named.  Exceptions raised by the callee propagate as from
a direct call (numba's status and exception-info protocol).  A call is a few nanoseconds more
than a linked one; the callees are whole products and passes, never per-element helpers.

The function table is an ``int64`` array of addresses, one slot per callee (the ``FN_*``
numbers below: fixed here, so that every process and every cached caller agree), filled for one
dtype by :class:`fastbp.compilation.Table`, which this floor knows nothing of: the engine passes
it first to every kernel that makes such calls; a slot a network never uses (the structured
passes of a plain network) is never compiled, stays 0, and a call through it raises instead of
jumping to address 0.
"""
import inspect

import numpy as np
from numba import from_dtype, types
from numba.core import cgutils
from numba.core.errors import TypingError
from numba.core.typing import signature
from numba.extending import intrinsic


# the table's slots
FN_GEMM, FN_TASK, FN_POST_FORWARD, FN_POST_BACKWARD, FN_OUTPUT_BATCH, FN_OUTPUT_ROWS, \
    FN_UPDATE, FN_FORWARD_ROWS, FN_BACKWARD_ROWS, FN_BLOCKED_STEP, FN_EMBEDDING, FN_SHARED, \
    FN_OVERLAP = range(13)
SLOTS = 13
NATIVES = [None] * SLOTS        # the Native of each slot, as the kernel modules define them
# canonical-signature letters: scalars, and arrays as letter + dimensions (+ "r": read-only).
# f: the float dtype the callee is compiled for; d: float64; i: int64; b: bool; "none": no
# result
_SCALARS = {"i": types.int64, "d": types.float64, "b": types.boolean}
# The type of each argument of the table's callees, by its name: a callee's signature is its
# definition's parameters read through this table (so the order of its arguments is written
# once, in its ``def``; a name means one type in every callee)
_BY_TYPE = {
    "i": "kind a_rs a_cs M K b_rs b_cs act t npan ngroups full MC nv N c_rs l r0 r1 mode seed "
         "step stage rows_fn out_code loss_code m lo hi code l0 l_hi l_lo P what B n_mine",
    "b": "par norms packed given stop",
    "f": "scale",
    "d": "factor loss wsum wtotal right",
    "i1": "fns aoff doff reduce_spec",
    "i1r": "rows Yi",
    "i2": "layout skips emb",
    "f1": "Af Bf vec Cf auxf pack Ap params stats acts grads deltas rowloss Zf Df state1 state2 "
          "hyper consts flags part rbuf",
    "f1r": "sw T",
    "f2": "C aux Z D",
    "f2r": "X Yf",
    "d1": "sq drop nst gsq correct",
}
ARG_TYPES = {name: code for code, names in _BY_TYPE.items() for name in names.split()}


def _type(code, f):
    if code == "none":
        return types.none
    base = f if code[0] == "f" else _SCALARS[code[0]]
    if len(code) == 1:
        return base
    return types.Array(base, int(code[1]), "C", readonly=code.endswith("r"))


def canonical(spec, f):
    """The numba signature of ``spec`` ("args -> result", letters as above) for float type f."""
    args, result = spec.split("->")
    return signature(_type(result.strip(), f), *[_type(c, f) for c in args.split()])


def spec_of(py_func, result):
    """The spec of ``py_func``'s canonical signature: its parameters' types (:data:`ARG_TYPES`)
    and ``result``'s letter."""
    names = inspect.signature(py_func).parameters
    unknown = [n for n in names if n not in ARG_TYPES]
    if unknown:
        raise TypeError(f"{py_func.__name__}: no type for the arguments {unknown} in "
                        f"native.ARG_TYPES")
    return " ".join(ARG_TYPES[n] for n in names) + " -> " + result


class Native:
    """The jitted ``dispatcher`` in slot ``slot`` of the function table (None: in none, for
    tests), compiled for :func:`canonical` ``(spec, dtype)``, the spec of its parameters'
    types (:func:`spec_of`) and its ``result``'s letter; a kernel calls it as
    ``stub(address, *args)``."""

    def __init__(self, slot, dispatcher, result):
        self.slot, self.dispatcher = slot, dispatcher
        self.spec = spec_of(dispatcher.py_func, result)
        self.stub = self._make_stub()
        if slot is not None:
            NATIVES[slot] = self

    def address(self, dtype):
        """Compile (or load from the cache) the canonical signature for ``dtype``; the address
        of its native entry point."""
        sig = canonical(self.spec, from_dtype(np.dtype(dtype)))
        self.dispatcher.compile(sig.args)
        cres = self.dispatcher.overloads[sig.args]
        return cres.library.get_pointer_to_function(cres.fndesc.llvm_func_name)

    def cached(self, dtype):
        """Whether :meth:`address` would find the code compiled, in this process or in numba's
        on-disk cache (True when numba's cache internals cannot tell: nothing is compiled
        aside then)."""
        return compiled(self.dispatcher, canonical(self.spec, from_dtype(np.dtype(dtype))).args)

    def _make_stub(self):
        spec = self.spec
        name = self.dispatcher.py_func.__name__

        @intrinsic
        def stub(typingctx, addr, *args):
            f = next((a.dtype for a in args if isinstance(a, types.Array)
                      and isinstance(a.dtype, types.Float)), None)
            if f is None or not isinstance(addr, types.Integer):
                return None
            sig = canonical(spec, f)
            if len(args) != len(sig.args):
                raise TypingError(f"{name}: {len(args)} arguments, expected {len(sig.args)}")
            for i, (a, c) in enumerate(zip(args, sig.args)):
                if a != c and typingctx.can_convert(a, c) is None:
                    raise TypingError(f"{name}: argument {i} is {a}, cannot convert to {c}")

            def codegen(context, builder, isig, llargs):
                values = [context.cast(builder, v, a, c) for v, a, c in
                          zip(cgutils.unpack_tuple(builder, llargs[1]), args, sig.args)]
                with cgutils.if_unlikely(builder, cgutils.is_null(builder, llargs[0])):
                    context.call_conv.return_user_exc(
                        builder, RuntimeError, (f"fastbp: {name} is not in the function table",))
                fnty = context.call_conv.get_function_type(sig.return_type, sig.args)
                ptr = builder.inttoptr(llargs[0], fnty.as_pointer())
                status, res = context.call_conv.call_function(builder, ptr, sig.return_type,
                                                              sig.args, values)
                with cgutils.if_unlikely(builder, status.is_error):
                    context.call_conv.return_status_propagate(builder, status)
                return res

            return signature(sig.return_type, addr, types.StarArgTuple(args)), codegen

        return stub


def compiled(dispatcher, sig):
    """Whether ``dispatcher`` has the argument types ``sig`` compiled, in this process or in
    numba's on-disk cache (True when numba's cache internals cannot tell)."""
    if sig in dispatcher.overloads:
        return True
    try:
        cache = dispatcher._cache
        return (not cache._enabled or cache._index_key(sig, dispatcher.targetctx.codegen())
                in cache._cache_file._load_index())
    except Exception:       # numba's internals moved
        return True


# -- a C function through its address: the reducer's sum over processes (MPI_Allreduce) -----
# ``reduce_spec``: int64 ``[address, in_place, datatype, op, comm, rank, size, wtime, nanos,
# iallreduce, wait, test, bucket_bytes, started, flag, status[8], requests[MAX_REQUESTS]]``:
# the address of ``MPI_Allreduce`` and the MPI handles of MPI_IN_PLACE, the buffer's datatype,
# MPI_SUM and the communicator, as the MPI library defines them (ints in MPICH, pointers in Open
# MPI: each is passed in a 64-bit register, of which an ``int`` parameter reads the low half),
# this process's rank and the processes' count, the address of ``MPI_Wtime`` and the
# nanoseconds spent in the sums so far (added to by the kernels); then the addresses of
# ``MPI_Iallreduce``, ``MPI_Wait`` and ``MPI_Test`` and the size in bytes of the gradient's
# buckets (0: one Allreduce after the backward pass), and the scratch of a step's buckets: the
# count started, MPI_Test's flag, an MPI_Status (8 words: MPICH's is 20 bytes, Open MPI's 24)
# and one MPI_Request per bucket (an ``int`` in MPICH, a pointer in Open MPI: each in a zeroed
# 64-bit slot).  Filled by fastbp.distributed (through the engine).
RS_ADDRESS, RS_IN_PLACE, RS_DATATYPE, RS_OP, RS_COMM, RS_RANK, RS_SIZE, RS_WTIME, RS_NANOS, \
    RS_IALLREDUCE, RS_WAIT, RS_TEST, RS_BUCKET_BYTES, RS_STARTED, RS_FLAG = range(15)
RS_STATUS = 15
RS_REQUESTS = RS_STATUS + 8
MAX_REQUESTS = 32
REDUCE_SPEC = RS_REQUESTS + MAX_REQUESTS


def _spec_fields(context, builder, spec_type, spec, *fields):
    """``(pointer to the spec's data, [the int64 fields loaded])`` in an intrinsic's codegen."""
    from llvmlite import ir
    sp = context.make_array(spec_type)(context, builder, spec).data
    return sp, [builder.load(builder.gep(sp, [ir.Constant(ir.IntType(64), i)])) for i in fields]


@intrinsic
def allreduce(typingctx, spec, buf):
    """``MPI_Allreduce(MPI_IN_PLACE, buf, len(buf), datatype, op, comm)`` through the address in
    ``spec`` (see REDUCE_SPEC); returns MPI's error code (0: success)."""
    if not (isinstance(spec, types.Array) and isinstance(buf, types.Array)):
        return None

    def codegen(context, builder, sig, args):
        from llvmlite import ir
        i64, i32, ptr = ir.IntType(64), ir.IntType(32), ir.IntType(8).as_pointer()
        _, (address, in_place, datatype, op, comm) = _spec_fields(
            context, builder, sig.args[0], args[0], RS_ADDRESS, RS_IN_PLACE, RS_DATATYPE, RS_OP,
            RS_COMM)
        ba = context.make_array(sig.args[1])(context, builder, args[1])
        count = builder.trunc(builder.extract_value(ba.shape, 0), i32)
        fnty = ir.FunctionType(i32, [ptr, ptr, i32, i64, i64, i64])
        return builder.call(builder.inttoptr(address, fnty.as_pointer()),
                            [builder.inttoptr(in_place, ptr), builder.bitcast(ba.data, ptr), count,
                             datatype, op, comm])

    return signature(types.int32, spec, buf), codegen


@intrinsic
def wtime(typingctx, spec):
    """``MPI_Wtime()`` through the address in ``spec`` (see REDUCE_SPEC): seconds."""
    if not isinstance(spec, types.Array):
        return None

    def codegen(context, builder, sig, args):
        from llvmlite import ir
        _, (address,) = _spec_fields(context, builder, sig.args[0], args[0], RS_WTIME)
        fnty = ir.FunctionType(ir.DoubleType(), [])
        return builder.call(builder.inttoptr(address, fnty.as_pointer()), [])

    return signature(types.float64, spec), codegen


@intrinsic
def iallreduce(typingctx, spec, buf, lo, hi, slot):
    """``MPI_Iallreduce(MPI_IN_PLACE, &buf[lo], hi − lo, datatype, op, comm, &request)`` through
    the addresses in ``spec`` (see REDUCE_SPEC), the request in ``spec[slot]``; returns MPI's
    error code (0: success)."""
    if not (isinstance(spec, types.Array) and isinstance(buf, types.Array)):
        return None

    def codegen(context, builder, sig, args):
        from llvmlite import ir
        i64, i32, ptr = ir.IntType(64), ir.IntType(32), ir.IntType(8).as_pointer()
        sp, (address, in_place, datatype, op, comm) = _spec_fields(
            context, builder, sig.args[0], args[0], RS_IALLREDUCE, RS_IN_PLACE, RS_DATATYPE,
            RS_OP, RS_COMM)
        ba = context.make_array(sig.args[1])(context, builder, args[1])
        start = builder.gep(ba.data, [args[2]])
        count = builder.trunc(builder.sub(args[3], args[2]), i32)
        request = builder.bitcast(builder.gep(sp, [args[4]]), ptr)
        fnty = ir.FunctionType(i32, [ptr, ptr, i32, i64, i64, i64, ptr])
        return builder.call(builder.inttoptr(address, fnty.as_pointer()),
                            [builder.inttoptr(in_place, ptr), builder.bitcast(start, ptr), count,
                             datatype, op, comm, request])

    return signature(types.int32, spec, buf, types.int64, types.int64, types.int64), codegen


@intrinsic
def mpi_wait(typingctx, spec, slot, test):
    """``MPI_Wait(&spec[slot], status)`` (``test`` False) or ``MPI_Test(&spec[slot], &flag,
    status)`` (True: progress, no wait) through the addresses in ``spec``; returns MPI's error
    code (0: success)."""
    if not isinstance(spec, types.Array):
        return None

    def codegen(context, builder, sig, args):
        from llvmlite import ir
        i64, i32, ptr = ir.IntType(64), ir.IntType(32), ir.IntType(8).as_pointer()
        sp, (wait, test) = _spec_fields(context, builder, sig.args[0], args[0], RS_WAIT, RS_TEST)
        request = builder.bitcast(builder.gep(sp, [args[1]]), ptr)
        status = builder.bitcast(builder.gep(sp, [ir.Constant(i64, RS_STATUS)]), ptr)
        flag = builder.bitcast(builder.gep(sp, [ir.Constant(i64, RS_FLAG)]), ptr)
        wait_ty = ir.FunctionType(i32, [ptr, ptr])
        test_ty = ir.FunctionType(i32, [ptr, ptr, ptr])
        with builder.if_else(args[2]) as (then, otherwise):
            with then:
                r_test = builder.call(builder.inttoptr(test, test_ty.as_pointer()),
                                      [request, flag, status])
                b_test = builder.basic_block
            with otherwise:
                r_wait = builder.call(builder.inttoptr(wait, wait_ty.as_pointer()),
                                      [request, status])
                b_wait = builder.basic_block
        result = builder.phi(i32)
        result.add_incoming(r_test, b_test)
        result.add_incoming(r_wait, b_wait)
        return result

    return signature(types.int32, spec, types.int64, types.boolean), codegen
