"""Two cuBLASLt matrix multiplies whose epilogues PyTorch does not expose, as custom ops.

Why: in a compiled ViT training step the MLP's GELU forward and backward are element-wise kernels
that re-read the (tokens, 4 x width) activations a matmul has just written or is about to read
(about 5 ms of ViT-B/16's 65 ms step; docs/benchmarks.md sections 7 and 9). cuBLASLt can do that
work inside the matmul, on tiles still in registers:

- `linear_gelu_aux`: gelu(x W^T + b) and the pre-activation x W^T + b (kept for the backward pass),
  one matmul (epilogue GELU_AUX_BIAS). The forward of fc1 + GELU.
- `linear_dgelu`: (g W) * gelu'(pre) (epilogue DGELU). fc2's input gradient and GELU's backward in
  one matmul.
- `linear_residual`: residual + x W^T + b (epilogue BIAS, reading the residual as C with beta 1).
  proj's or fc2's output added to the residual stream without a pass of its own.

cuBLASLt can also sum the bias gradient inside these matmuls (DGELU_BGRAD, BGRADB), but on an H200
at ViT-B/16's shapes those epilogues are slower than the matmul plus a separate sum (measured in
docs/benchmarks.md section 10); vitkit.layers.bias_grad does the sums instead.

These are the calls NVIDIA's Transformer Engine makes for its fused MLP; PyTorch only exposes the
forward GELU epilogue without the pre-activation (`torch._addmm_activation`). The library is
reached through ctypes (no compiler needed): it is the libcublasLt that PyTorch itself loaded. The
GELU is the tanh form (vitkit.layers.linear_gelu says why that is the model's function).

Everything works without CUDA: off the GPU, or where the library cannot be loaded, each op computes
the same maths with plain PyTorch ops (`_reference_*`), which is also what the GPU tests compare
against.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import threading

import torch

from vitkit.layers import ops
from vitkit.layers.linear_gelu import gelu_tanh, gelu_tanh_grad

# Values from cublasLt.h / library_types.h (stable across CUDA 11-13).
_CUDA_TYPE = {torch.bfloat16: 14, torch.float16: 2, torch.float32: 0}
_COMPUTE_32F = 68
_OP_N, _OP_T = 0, 1
_DESC_TRANSA, _DESC_TRANSB, _DESC_EPILOGUE = 3, 4, 7
_DESC_BIAS_POINTER, _DESC_AUX_POINTER, _DESC_AUX_LD = 8, 11, 12
_PREF_MAX_WORKSPACE = 1
_PREF_MIN_ALIGNMENT = (5, 6, 7, 8)  # A, B, C, D
EPILOGUES = {"bias": 4, "gelu_aux_bias": 164, "dgelu": 192}
_WORKSPACE_BYTES = 32 * 1024 * 1024  # the most an algorithm may ask for
# The heuristic is asked once within each limit. Only the full workspace: adding the workspace-free
# algorithms (no memset before the matmul) let the first-call timing pick slower ones, ViT-B/16's step
# lost 3% on an H100 (docs/benchmarks.md section 16; scripts/cublaslt_memset_bench.py compares them).
_WORKSPACE_LIMITS = (_WORKSPACE_BYTES,)
_CANDIDATES = 8  # algorithms the heuristic proposes per ask; the fastest on the first real call is kept


class _HeuristicResult(ctypes.Structure):
    _fields_ = [("algo", ctypes.c_uint64 * 8), ("workspace_size", ctypes.c_size_t), ("state", ctypes.c_int),
                ("waves_count", ctypes.c_float), ("reserved", ctypes.c_int * 4)]


class CublasLtError(RuntimeError):
    pass


def _loaded_library_path() -> str | None:
    """The libcublasLt that this process (PyTorch) has mapped, so we call the same build."""
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                if "libcublasLt.so" in line:
                    return line.split()[-1]
    except OSError:
        pass
    return ctypes.util.find_library("cublasLt")


@functools.cache
def _library() -> ctypes.CDLL | None:
    if not torch.cuda.is_available():
        return None
    torch.ones(8, 8, device="cuda") @ torch.ones(8, 8, device="cuda")  # makes PyTorch load cuBLAS(Lt)
    path = _loaded_library_path()
    if path is None:
        return None
    try:
        lib = ctypes.CDLL(path)
    except OSError:
        return None
    lib.cublasLtMatmul.argtypes = [ctypes.c_void_p] * 14 + [ctypes.c_size_t, ctypes.c_void_p]
    return lib


def available() -> bool:
    """Whether the fused cuBLASLt path can run here (CUDA and a loadable libcublasLt)."""
    return _library() is not None


def _check(status: int, what: str) -> None:
    if status != 0:
        raise CublasLtError(f"cuBLASLt {what} failed with status {status}")


def _alignment(t: torch.Tensor) -> int:
    ptr = t.data_ptr()
    align = 256
    while ptr % align:
        align //= 2
    return align


class _Plan:
    """Descriptors and the chosen algorithm for one problem (shapes, layouts, epilogue, alignments)."""

    def __init__(self, lib: ctypes.CDLL, handle: ctypes.c_void_p, key: tuple) -> None:
        (dtype, out_dtype, m, n, k, transa, transb, lda, ldb, ldd, epilogue, aux_ld, aligns) = key
        self.lib = lib
        self.desc = ctypes.c_void_p()
        _check(lib.cublasLtMatmulDescCreate(ctypes.byref(self.desc), _COMPUTE_32F, _CUDA_TYPE[torch.float32]),
               "MatmulDescCreate")
        self._set(_DESC_TRANSA, ctypes.c_int32(transa))
        self._set(_DESC_TRANSB, ctypes.c_int32(transb))
        self._set(_DESC_EPILOGUE, ctypes.c_uint32(EPILOGUES[epilogue]))
        if aux_ld:
            self._set(_DESC_AUX_LD, ctypes.c_int64(aux_ld))
        in_type, out_type = _CUDA_TYPE[dtype], _CUDA_TYPE[out_dtype]
        self.a = self._layout(in_type, *((m, k) if transa == _OP_N else (k, m)), lda)
        self.b = self._layout(in_type, *((k, n) if transb == _OP_N else (n, k)), ldb)
        self.d = self._layout(out_type, m, n, ldd)
        # The heuristic's proposals within each workspace limit, timed together on the first call.
        self.candidates = []
        for workspace in _WORKSPACE_LIMITS:
            for result in self._proposals(handle, workspace, aligns):
                if all(bytes(result.algo) != bytes(c.algo) for c in self.candidates):
                    self.candidates.append(result)
        if not self.candidates:
            raise CublasLtError(f"cuBLASLt has no algorithm for epilogue {epilogue!r} on {key}")
        self.result = self.candidates[0]  # the heuristic's first choice until timed
        self.timed = len(self.candidates) == 1

    def _proposals(self, handle: ctypes.c_void_p, workspace: int, aligns: tuple) -> list[_HeuristicResult]:
        """Up to _CANDIDATES algorithms the heuristic proposes within `workspace` bytes."""
        lib, pref = self.lib, ctypes.c_void_p()
        _check(lib.cublasLtMatmulPreferenceCreate(ctypes.byref(pref)), "PreferenceCreate")
        size = ctypes.c_uint64(workspace)
        _check(lib.cublasLtMatmulPreferenceSetAttribute(pref, _PREF_MAX_WORKSPACE, ctypes.byref(size),
                                                        ctypes.sizeof(size)), "PreferenceSetAttribute")
        for attribute, align in zip(_PREF_MIN_ALIGNMENT, aligns):
            value = ctypes.c_uint32(align)
            _check(lib.cublasLtMatmulPreferenceSetAttribute(pref, attribute, ctypes.byref(value),
                                                            ctypes.sizeof(value)), "PreferenceSetAttribute")
        results = (_HeuristicResult * _CANDIDATES)()
        found = ctypes.c_int(0)
        status = lib.cublasLtMatmulAlgoGetHeuristic(handle, self.desc, self.a, self.b, self.d, self.d, pref,
                                                    _CANDIDATES, results, ctypes.byref(found))
        lib.cublasLtMatmulPreferenceDestroy(pref)
        return [results[i] for i in range(found.value)] if status == 0 else []

    def _set(self, attribute: int, value: ctypes._SimpleCData) -> None:
        _check(self.lib.cublasLtMatmulDescSetAttribute(self.desc, attribute, ctypes.byref(value),
                                                       ctypes.sizeof(value)), f"MatmulDescSetAttribute({attribute})")

    def _layout(self, dtype: int, rows: int, cols: int, ld: int) -> ctypes.c_void_p:
        layout = ctypes.c_void_p()
        _check(self.lib.cublasLtMatrixLayoutCreate(ctypes.byref(layout), dtype, ctypes.c_uint64(rows),
                                                   ctypes.c_uint64(cols), ctypes.c_int64(ld)), "MatrixLayoutCreate")
        return layout


class _Runner:
    """One cuBLASLt handle per device; plans cached per problem.

    Nothing lives on the GPU between calls: each call takes the workspace its algorithm needs from
    PyTorch's allocator and gives it back, so the ops can be captured into CUDA graphs (which refuse
    a tensor that a graph's memory pool hands out and nobody frees).
    """

    def __init__(self, lib: ctypes.CDLL, device: torch.device) -> None:
        self.lib = lib
        self.device = device
        self.handle = ctypes.c_void_p()
        _check(lib.cublasLtCreate(ctypes.byref(self.handle)), "Create")
        self.plans: dict[tuple, _Plan] = {}
        self.lock = threading.Lock()
        self.one, self.zero = ctypes.c_float(1.0), ctypes.c_float(0.0)

    def matmul(self, a: torch.Tensor, b: torch.Tensor, d: torch.Tensor, *, m: int, n: int, k: int, transa: int,
               transb: int, lda: int, ldb: int, ldd: int, epilogue: str, aux: torch.Tensor | None = None,
               aux_ld: int = 0, bias: torch.Tensor | None = None, c: torch.Tensor | None = None) -> None:
        """D = epilogue(op(A) op(B) [+ C]) in cuBLAS's column-major terms (D and C are m x n, same layout)."""
        aligns = tuple(_alignment(t) for t in (a, b, d if c is None else c, d))
        key = (a.dtype, d.dtype, m, n, k, transa, transb, lda, ldb, ldd, epilogue, aux_ld, aligns)
        with self.lock:
            plan = self.plans.get(key)
            if plan is None:
                plan = self.plans[key] = _Plan(self.lib, self.handle, key)
            if bias is not None:
                plan._set(_DESC_BIAS_POINTER, ctypes.c_void_p(bias.data_ptr()))
            if aux is not None:
                plan._set(_DESC_AUX_POINTER, ctypes.c_void_p(aux.data_ptr()))
            stream = torch.cuda.current_stream(d.device)
            if not plan.timed and not torch.cuda.is_current_stream_capturing():
                plan.result = min(plan.candidates, key=lambda r: self._time(plan, r, a, b, c, d, stream, epilogue))
                plan.timed = True
            self._launch(plan, plan.result, a, b, c, d, stream, epilogue)

    def _launch(self, plan: _Plan, result: _HeuristicResult, a, b, c, d, stream, epilogue: str) -> None:
        size = result.workspace_size
        workspace = torch.empty(size, dtype=torch.uint8, device=self.device) if size else None
        beta, c = (self.zero, d) if c is None else (self.one, c)  # with beta 0 cuBLASLt does not read C
        _check(self.lib.cublasLtMatmul(
            self.handle, plan.desc, ctypes.byref(self.one), ctypes.c_void_p(a.data_ptr()), plan.a,
            ctypes.c_void_p(b.data_ptr()), plan.b, ctypes.byref(beta), ctypes.c_void_p(c.data_ptr()),
            plan.d, ctypes.c_void_p(d.data_ptr()), plan.d, ctypes.byref(result.algo),
            ctypes.c_void_p(workspace.data_ptr() if size else None), size,
            ctypes.c_void_p(stream.cuda_stream)), f"Matmul({epilogue})")

    def _time(self, plan: _Plan, result: _HeuristicResult, a, b, c, d, stream, epilogue: str) -> float:
        """Median-of-3 milliseconds of one candidate algorithm on the real operands, after one warm-up."""
        from vitkit.bench import time_steps  # here: vitkit.bench imports the models, which import this module

        return time_steps(lambda: self._launch(plan, result, a, b, c, d, stream, epilogue), d.device, warmup=1,
                          iters=1, repeats=3)


_runners: dict[int, _Runner] = {}


def _runner(device: torch.device) -> _Runner | None:
    lib = _library()
    if lib is None:
        return None
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index not in _runners:
        _runners[index] = _Runner(lib, torch.device("cuda", index))
    return _runners[index]


def _fused(*tensors: torch.Tensor) -> _Runner | None:
    """The runner if these tensors can take the cuBLASLt path: CUDA, 16-bit, row-major contiguous,
    rows a multiple of 8 elements; otherwise None (the op computes the reference maths)."""
    first = tensors[0]
    if not first.is_cuda or first.dtype not in (torch.bfloat16, torch.float16):
        return None
    # cuBLASLt's epilogues want 16-byte aligned rows (the auxiliary matrix's too)
    if any(t.dtype != first.dtype or not t.is_contiguous() or t.shape[-1] % 8 for t in tensors):
        return None
    return _runner(first.device)


# Reference maths (and the path off the GPU): what each cuBLASLt call computes.

def _reference_linear_gelu_aux(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor):
    pre = torch.nn.functional.linear(x, weight, bias)
    return gelu_tanh(pre), pre


def _reference_linear_dgelu(grad: torch.Tensor, weight: torch.Tensor, pre: torch.Tensor):
    return ((grad @ weight) * gelu_tanh_grad(pre)).to(grad.dtype)


def _linear_gelu_aux(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x (M, K), weight (N, K), bias (N) -> (gelu_tanh(pre), pre) with pre = x weight^T + bias, both (M, N)."""
    runner = _fused(x, weight, bias)
    if runner is None:
        return _reference_linear_gelu_aux(x, weight, bias)
    (m_tokens, k), n = x.shape, weight.shape[0]
    out, pre = x.new_empty(m_tokens, n), x.new_empty(m_tokens, n)
    # column-major: out^T (n x M) = W (n x k, stored as k x n: transposed) @ x^T (k x M)
    runner.matmul(weight, x, out, m=n, n=m_tokens, k=k, transa=_OP_T, transb=_OP_N, lda=k, ldb=k, ldd=n,
                  epilogue="gelu_aux_bias", bias=bias, aux=pre, aux_ld=n)
    return out, pre


def _linear_gelu_aux_fake(x, weight, bias):
    shape = (x.shape[0], weight.shape[0])
    return x.new_empty(shape), x.new_empty(shape)


linear_gelu_aux = ops.define("linear_gelu_aux(Tensor x, Tensor weight, Tensor bias) -> (Tensor, Tensor)",
                             _linear_gelu_aux, _linear_gelu_aux_fake)


def _linear_dgelu(grad: torch.Tensor, weight: torch.Tensor, pre: torch.Tensor) -> torch.Tensor:
    """grad (M, N), weight (N, K), pre (M, K) -> (grad weight) * gelu_tanh'(pre), (M, K).

    The gradient through a linear layer fed by gelu_tanh(pre), carried back through the GELU.
    """
    runner = _fused(grad, weight, pre)
    if runner is None:
        return _reference_linear_dgelu(grad, weight, pre)
    (m_tokens, n), k = grad.shape, weight.shape[1]
    grad_pre = grad.new_empty(m_tokens, k)
    # column-major: grad_pre^T (k x M) = W^T (stored as k x n) @ grad^T (n x M)
    runner.matmul(weight, grad, grad_pre, m=k, n=m_tokens, k=n, transa=_OP_N, transb=_OP_N, lda=k, ldb=n, ldd=k,
                  epilogue="dgelu", aux=pre, aux_ld=k)
    return grad_pre


linear_dgelu = ops.define("linear_dgelu(Tensor grad, Tensor weight, Tensor pre) -> Tensor", _linear_dgelu,
                          lambda grad, weight, pre: grad.new_empty(grad.shape[0], weight.shape[1]))


def _reference_linear_residual(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, residual: torch.Tensor):
    return residual + torch.nn.functional.linear(x, weight, bias)


def _linear_residual(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                     residual: torch.Tensor) -> torch.Tensor:
    """x (M, K), weight (N, K), bias (N), residual (M, N) -> residual + x weight^T + bias, (M, N).

    One matmul whose epilogue adds the bias and reads the residual (beta = 1), rounding once.
    """
    runner = _fused(x, weight, bias, residual)
    if runner is None:
        return _reference_linear_residual(x, weight, bias, residual)
    (m_tokens, k), n = x.shape, weight.shape[0]
    out = torch.empty_like(residual)
    # column-major: out^T (n x M) = W (n x k, stored transposed) @ x^T (k x M) + residual^T
    runner.matmul(weight, x, out, m=n, n=m_tokens, k=k, transa=_OP_T, transb=_OP_N, lda=k, ldb=k, ldd=n,
                  epilogue="bias", bias=bias, c=residual)
    return out


linear_residual = ops.define("linear_residual(Tensor x, Tensor weight, Tensor bias, Tensor residual) -> Tensor",
                             _linear_residual, lambda x, weight, bias, residual: torch.empty_like(residual))
