"""Fused LeGrad relevance of the factorized MaskInversion engine (issue 30 item 1).

``relevance_from_grad(gh @ vt)`` materialises dS/dA, a (P, H, N, N) tensor (P masks, H heads,
N tokens: 740 M floats for 10 masks of a ViT-B/16 at 448 px), only to clamp it and sum it over
heads and rows; autograd then keeps a second one for the ReLU's backward. Here one C++ kernel
computes the products tile by tile and applies the ReLU and the column sums in the same pass:

- forward: ``out[p, h, j] = sum_i max(0, sum_k g[p, h, i, k] vt[h, k, j])``. ``vt`` is shared by
  all masks (never expanded); each tile of ``g @ vt`` lives in registers, a panel of ``vt`` in
  L1. When a gradient is wanted it also keeps the sign of every product as one bit (N*N/8
  bytes per mask and head);
- backward: ``grad_g[p, h, i, :] = sum_j [s_pij > 0] w[p, h, j] v[h, j, :]`` (``w`` the upstream
  gradient, ``v = vt^T``), a second product whose left factor is built from those bits, tile by
  tile, so the products are never recomputed. No gradient for ``vt`` (a detached cache).

The kernel is compiled at first use with ``torch.utils.cpp_extension.load_inline``
(``-O3 -march=native -fopenmp``; AVX-512, AVX2+FMA or portable code, chosen by the compiler's
target), float32 and float64, parallel over masks x heads with ``at::parallel_for`` (so it
follows ``torch.set_num_threads``). The build is cached in torch's extensions folder, or under
``$REGIONLAB_FUSED_RELEVANCE_BUILD_DIR``, in a folder named after the source, the flags and the
CPU (a build for one CPU is never loaded on another). It builds in about 6 s.

``REGIONLAB_FUSED_RELEVANCE=0`` turns it off. Off, on a non-CPU tensor, for other dtypes, when
``vt`` itself needs a gradient, or when the kernel cannot be built (no compiler, no ninja, ...),
the PyTorch expression is used instead, with one logged message per reason; never an error.
Both agree to float rounding (``tests/test_fused_relevance.py``).
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import os
import platform
import threading
import time
from pathlib import Path

import torch
from torch.autograd.function import once_differentiable

from ..explain.legrad import relevance_from_grad

log = logging.getLogger("regionlab.region")

ENV_SWITCH = "REGIONLAB_FUSED_RELEVANCE"  # 0/false/off: always the PyTorch expression
ENV_BUILD_DIR = "REGIONLAB_FUSED_RELEVANCE_BUILD_DIR"  # root folder of the cached builds
ISAS = ("native", "avx2", "generic")  # "native": the best the compiling CPU has

_DTYPES = {torch.float32: 0, torch.float64: 1}

_SOURCE = r"""
#include <pybind11/pybind11.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#if defined(__AVX512F__) && !defined(RL_FORCE_AVX2) && !defined(RL_FORCE_GENERIC)
#define RL_ISA 3
#elif defined(__AVX2__) && defined(__FMA__) && !defined(RL_FORCE_GENERIC)
#define RL_ISA 2
#else
#define RL_ISA 0
#endif
#if RL_ISA > 0
#include <immintrin.h>
#endif

namespace {

// ---------------------------------------------------------------- SIMD vocabulary
// L lanes per vector; MR rows x NV vectors of columns per forward register tile; MR rows x KV
// vectors of the head dimension per backward register tile.

template <typename T>
struct Simd {  // portable: GCC/Clang vector extensions, 32 bytes (lowered to what the CPU has)
  static constexpr int L = 32 / sizeof(T), MR = 4, NV = 2, KV = 2;
  typedef T V __attribute__((vector_size(32)));
  static V zero() { return V{} ; }
  static V load(const T* p) { V v; std::memcpy(&v, p, sizeof(V)); return v; }
  static void store(T* p, V v) { std::memcpy(p, &v, sizeof(V)); }
  static V bcast(const T* p) { return zero() + *p; }
  static V fma(V a, V b, V c) { return a * b + c; }
  static V add(V a, V b) { return a + b; }
  static V relu(V a) { return a < zero() ? zero() : a; }  // NaN stays NaN
  static uint64_t gt0(V a) {
    uint64_t b = 0;
    for (int l = 0; l < L; ++l) b |= uint64_t(a[l] > T(0)) << l;
    return b;
  }
  using I = typename std::conditional<sizeof(T) == 4, int32_t, int64_t>::type;
  typedef I IV __attribute__((vector_size(32)));
  static V select(uint64_t bits, V w) {
    IV lane;
    for (int l = 0; l < L; ++l) lane[l] = I(1) << l;
    const IV m = ((IV{} + (I)(bits & ((1u << L) - 1))) & lane) == lane;  // -1 where set
    return (V)((IV)w & m);
  }
};

#if RL_ISA == 3
template <>
struct Simd<float> {
  static constexpr int L = 16, MR = 6, NV = 4, KV = 4;
  using V = __m512;
  static V zero() { return _mm512_setzero_ps(); }
  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, V v) { _mm512_storeu_ps(p, v); }
  static V bcast(const float* p) { return _mm512_set1_ps(*p); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static V relu(V a) { return _mm512_max_ps(zero(), a); }  // NaN stays NaN
  static uint64_t gt0(V a) { return _mm512_cmp_ps_mask(a, zero(), _CMP_GT_OQ); }
  static V select(uint64_t bits, V w) { return _mm512_maskz_mov_ps((__mmask16)bits, w); }
};
template <>
struct Simd<double> {
  static constexpr int L = 8, MR = 6, NV = 4, KV = 4;
  using V = __m512d;
  static V zero() { return _mm512_setzero_pd(); }
  static V load(const double* p) { return _mm512_loadu_pd(p); }
  static void store(double* p, V v) { _mm512_storeu_pd(p, v); }
  static V bcast(const double* p) { return _mm512_set1_pd(*p); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_pd(a, b, c); }
  static V add(V a, V b) { return _mm512_add_pd(a, b); }
  static V relu(V a) { return _mm512_max_pd(zero(), a); }
  static uint64_t gt0(V a) { return _mm512_cmp_pd_mask(a, zero(), _CMP_GT_OQ); }
  static V select(uint64_t bits, V w) { return _mm512_maskz_mov_pd((__mmask8)bits, w); }
};
#elif RL_ISA == 2
template <>
struct Simd<float> {
  static constexpr int L = 8, MR = 6, NV = 2, KV = 2;
  using V = __m256;
  static V zero() { return _mm256_setzero_ps(); }
  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, V v) { _mm256_storeu_ps(p, v); }
  static V bcast(const float* p) { return _mm256_broadcast_ss(p); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static V relu(V a) { return _mm256_max_ps(zero(), a); }
  static uint64_t gt0(V a) {
    return (uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(a, zero(), _CMP_GT_OQ));
  }
  static V select(uint64_t bits, V w) {
    const __m256i lane = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    __m256i m = _mm256_and_si256(_mm256_set1_epi32((int)(bits & 0xff)), lane);
    return _mm256_and_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(m, lane)), w);
  }
};
template <>
struct Simd<double> {
  static constexpr int L = 4, MR = 6, NV = 2, KV = 2;
  using V = __m256d;
  static V zero() { return _mm256_setzero_pd(); }
  static V load(const double* p) { return _mm256_loadu_pd(p); }
  static void store(double* p, V v) { _mm256_storeu_pd(p, v); }
  static V bcast(const double* p) { return _mm256_broadcast_sd(p); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_pd(a, b, c); }
  static V add(V a, V b) { return _mm256_add_pd(a, b); }
  static V relu(V a) { return _mm256_max_pd(zero(), a); }
  static uint64_t gt0(V a) {
    return (uint32_t)_mm256_movemask_pd(_mm256_cmp_pd(a, zero(), _CMP_GT_OQ));
  }
  static V select(uint64_t bits, V w) {
    const __m256i lane = _mm256_setr_epi64x(1, 2, 4, 8);
    __m256i m = _mm256_and_si256(_mm256_set1_epi64x((long long)(bits & 0xf)), lane);
    return _mm256_and_pd(_mm256_castsi256_pd(_mm256_cmpeq_epi64(m, lane)), w);
  }
};
#endif

inline int64_t round_up(int64_t a, int64_t b) { return (a + b - 1) / b * b; }

// (mask, head) pairs per task: a thread gets at least ~2 M multiply-adds (tens of
// microseconds), so small problems run on the calling thread with no thread wake-ups.
inline int64_t grain(int64_t N, int64_t d) {
  return std::max<int64_t>(1, (int64_t(1) << 21) / std::max<int64_t>(1, N * N * d));
}

// ---------------------------------------------------------------- forward
// g (P, H, N, d), vt (H, d, N) -> out (P, H, N); mask (P*H, N, W) bits of g @ vt > 0, W =
// ceil(N / 64) words per row, or null. mask must arrive zeroed.
template <typename T>
void forward_impl(const T* g, const T* vt, T* out, uint64_t* mask, int64_t P, int64_t H,
                  int64_t N, int64_t d) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int L = S::L, MR = S::MR, NV = S::NV, NR = NV * L;
  const int64_t NJ = round_up(N, NR), NP = NJ / NR, W = (N + 63) / 64;
  // vt packed as (H, NP, d, NR): one panel of NR columns is contiguous (and zero-padded).
  std::vector<T> vtp((size_t)(H * NJ * d));  // H d N copies: serial, ~1% of the products
  for (int64_t hp = 0; hp < H * NP; ++hp) {
    const int64_t h = hp / NP, pn = hp % NP;
    T* dst = vtp.data() + hp * d * NR;
    for (int64_t k = 0; k < d; ++k)
      for (int64_t c = 0; c < NR; ++c) {
        const int64_t j = pn * NR + c;
        dst[k * NR + c] = j < N ? vt[(h * d + k) * N + j] : T(0);
      }
  }
  const int64_t nfull = N / MR * MR;
  at::parallel_for(0, P * H, grain(N, d), [&](int64_t b0, int64_t b1) {
    std::vector<T> cs((size_t)NJ), tail((size_t)(MR * d), T(0));
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t h = b % H;
      const T* gb = g + b * N * d;
      uint64_t* mb = mask ? mask + b * N * W : nullptr;
      std::fill(cs.begin(), cs.end(), T(0));
      if (nfull < N)  // the last, partial block of rows, zero-padded (zeros add nothing)
        std::memcpy(tail.data(), gb + nfull * d, (size_t)((N - nfull) * d) * sizeof(T));
      for (int64_t pn = 0; pn < NP; ++pn) {
        const T* panel = vtp.data() + (h * NP + pn) * d * NR;
        T* csp = cs.data() + pn * NR;
        for (int64_t i0 = 0; i0 < N; i0 += MR) {
          const T* a = i0 < nfull ? gb + i0 * d : tail.data();
          V acc[MR][NV];
#pragma GCC unroll 8
          for (int r = 0; r < MR; ++r)
#pragma GCC unroll 8
            for (int c = 0; c < NV; ++c) acc[r][c] = S::zero();
          for (int64_t k = 0; k < d; ++k) {
            V bv[NV];
#pragma GCC unroll 8
            for (int c = 0; c < NV; ++c) bv[c] = S::load(panel + k * NR + c * L);
#pragma GCC unroll 8
            for (int r = 0; r < MR; ++r) {
              const V av = S::bcast(a + r * d + k);
#pragma GCC unroll 8
              for (int c = 0; c < NV; ++c) acc[r][c] = S::fma(av, bv[c], acc[r][c]);
            }
          }
#pragma GCC unroll 8
          for (int c = 0; c < NV; ++c) {
            V s = S::relu(acc[0][c]);
#pragma GCC unroll 8
            for (int r = 1; r < MR; ++r) s = S::add(s, S::relu(acc[r][c]));
            S::store(csp + c * L, S::add(S::load(csp + c * L), s));
          }
          if (mb) {  // constant trip counts: acc must stay in registers, never indexed
#pragma GCC unroll 8
            for (int r = 0; r < MR; ++r)
#pragma GCC unroll 8
              for (int c = 0; c < NV; ++c) {
                const int64_t j = pn * NR + c * L;  // L divides 64: one word holds all L bits
                if (i0 + r < N && j < N)
                  mb[(i0 + r) * W + j / 64] |= S::gt0(acc[r][c]) << (j % 64);
              }
          }
        }
      }
      std::memcpy(out + b * N, cs.data(), (size_t)N * sizeof(T));
    }
  });
}

// ---------------------------------------------------------------- backward
// w (P, H, N) upstream gradient, vt (H, d, N), mask from the forward -> gg (P, H, N, d).
template <typename T>
void backward_impl(const T* w, const T* vt, const uint64_t* mask, T* gg, int64_t P, int64_t H,
                   int64_t N, int64_t d) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int L = S::L, MR = S::MR, KV = S::KV, KB = KV * L;
  const int64_t NJ = round_up(N, L), DB = (d + KB - 1) / KB, W = (N + 63) / 64;
  // v = vt^T packed as (H, DB, NJ, KB): KB head-dimension columns of one token contiguous.
  std::vector<T> vp((size_t)(H * DB * NJ * KB));
  for (int64_t hb = 0; hb < H * DB; ++hb) {
    const int64_t h = hb / DB, db = hb % DB;
    T* dst = vp.data() + hb * NJ * KB;
    for (int64_t j = 0; j < NJ; ++j)
      for (int64_t c = 0; c < KB; ++c) {
        const int64_t k = db * KB + c;
        dst[j * KB + c] = (j < N && k < d) ? vt[(h * d + k) * N + j] : T(0);
      }
  }
  at::parallel_for(0, P * H, grain(N, d), [&](int64_t b0, int64_t b1) {
    // A: MR rows of [s > 0] * w, built from the bits; wp: w zero-padded to NJ.
    std::vector<T> A((size_t)(MR * NJ)), wp((size_t)NJ, T(0));
    T tmp[KB];
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t h = b % H;
      const uint64_t* mb = mask + b * N * W;
      std::memcpy(wp.data(), w + b * N, (size_t)N * sizeof(T));
      for (int64_t i0 = 0; i0 < N; i0 += MR) {
        const int64_t rows = std::min<int64_t>(MR, N - i0);
        for (int r = 0; r < MR; ++r) {
          T* ar = A.data() + r * NJ;
          if (r >= rows) {
            std::fill(ar, ar + NJ, T(0));
            continue;
          }
          const uint64_t* mrow = mb + (i0 + r) * W;
          for (int64_t j = 0; j < NJ; j += L) {
            const uint64_t bits = j < N ? mrow[j / 64] >> (j % 64) : 0;
            S::store(ar + j, S::select(bits, S::load(wp.data() + j)));
          }
        }
        for (int64_t db = 0; db < DB; ++db) {
          const T* vb = vp.data() + (h * DB + db) * NJ * KB;
          V acc[MR][KV];
#pragma GCC unroll 8
          for (int r = 0; r < MR; ++r)
#pragma GCC unroll 8
            for (int c = 0; c < KV; ++c) acc[r][c] = S::zero();
          for (int64_t j = 0; j < NJ; ++j) {
            V bv[KV];
#pragma GCC unroll 8
            for (int c = 0; c < KV; ++c) bv[c] = S::load(vb + j * KB + c * L);
#pragma GCC unroll 8
            for (int r = 0; r < MR; ++r) {
              const V av = S::bcast(A.data() + r * NJ + j);
#pragma GCC unroll 8
              for (int c = 0; c < KV; ++c) acc[r][c] = S::fma(av, bv[c], acc[r][c]);
            }
          }
          const int64_t k0 = db * KB, kn = std::min<int64_t>(KB, d - k0);
#pragma GCC unroll 8
          for (int r = 0; r < MR; ++r) {  // constant trip count (acc stays in registers)
            if (r >= rows) continue;
            T* dst = gg + (b * N + i0 + r) * d + k0;
            if (kn == KB) {
#pragma GCC unroll 8
              for (int c = 0; c < KV; ++c) S::store(dst + c * L, acc[r][c]);
            } else {
#pragma GCC unroll 8
              for (int c = 0; c < KV; ++c) S::store(tmp + c * L, acc[r][c]);
              std::memcpy(dst, tmp, (size_t)kn * sizeof(T));
            }
          }
        }
      }
    }
  });
}

// Raw addresses: the Python side checks devices, dtypes, shapes and contiguity.
void forward(int64_t dtype, uintptr_t g, uintptr_t vt, uintptr_t out, uintptr_t mask, int64_t P,
             int64_t H, int64_t N, int64_t d) {
  if (dtype == 0)
    forward_impl<float>((const float*)g, (const float*)vt, (float*)out, (uint64_t*)mask, P, H,
                        N, d);
  else
    forward_impl<double>((const double*)g, (const double*)vt, (double*)out, (uint64_t*)mask, P,
                         H, N, d);
}

void backward(int64_t dtype, uintptr_t w, uintptr_t vt, uintptr_t mask, uintptr_t gg, int64_t P,
              int64_t H, int64_t N, int64_t d) {
  if (dtype == 0)
    backward_impl<float>((const float*)w, (const float*)vt, (const uint64_t*)mask, (float*)gg,
                         P, H, N, d);
  else
    backward_impl<double>((const double*)w, (const double*)vt, (const uint64_t*)mask,
                          (double*)gg, P, H, N, d);
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  namespace py = pybind11;
  m.def("forward", &forward, py::call_guard<py::gil_scoped_release>());
  m.def("backward", &backward, py::call_guard<py::gil_scoped_release>());
  m.def("isa", []() { return RL_ISA == 3 ? "avx512" : RL_ISA == 2 ? "avx2" : "generic"; });
}
"""

_CFLAGS = ["-O3", "-march=native", "-fopenmp"]
_ISA_DEFINES = {"native": [], "avx2": ["-DRL_FORCE_AVX2"], "generic": ["-DRL_FORCE_GENERIC"]}

_lock = threading.Lock()
_modules: dict[str, object | None] = {}
_told: set[str] = set()
#: seconds the last build (or load of a cached build) took, per ISA; for reports and tests
build_seconds: dict[str, float] = {}


def _tell_once(key: str, level: int, msg: str, *args) -> None:
    if key not in _told:
        _told.add(key)
        log.log(level, msg, *args)


def enabled() -> bool:
    """False when ``REGIONLAB_FUSED_RELEVANCE`` is 0/false/off/no (read on every call)."""
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "off", "no")


def _cpu_tag() -> str:
    """The machine and its instruction-set flags: ``-march=native`` builds are per CPU."""
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                flags = line
                break
    except OSError:
        pass
    return f"{platform.machine()} {platform.processor()} {flags}"


def _clear_stale_lock(cpp_extension, build_dir: str | None, name: str) -> None:
    """Torch releases before the advisory ``FileLock`` guard builds with a lock *file* that a
    killed build leaves behind, and every later build then waits on it forever: remove one
    older than 10 minutes (a build takes seconds)."""
    if getattr(cpp_extension, "FileBaton", None) is None:
        return  # this torch locks with FileLock: a dead holder releases it
    try:
        lock = Path(build_dir or cpp_extension._get_build_directory(name, False)) / "lock"
        if lock.exists() and time.time() - lock.stat().st_mtime > 600:
            log.warning("removing a stale build lock %s (left by an interrupted build)", lock)
            lock.unlink()
    except Exception:  # noqa: BLE001 - best effort; the build itself reports real problems
        pass


def load_kernel(isa: str = "native"):
    """The compiled extension (built on the first call, then cached), or None when it cannot
    be built; the reason is logged once."""
    if isa not in ISAS:
        raise ValueError(f"isa must be one of {ISAS}, got {isa!r}")
    if isa in _modules:
        return _modules[isa]
    with _lock:
        if isa in _modules:
            return _modules[isa]
        flags = _CFLAGS + _ISA_DEFINES[isa]
        key = hashlib.sha256("\n".join([_SOURCE, *flags, _cpu_tag(), torch.__version__])
                             .encode()).hexdigest()[:12]
        name = f"regionlab_fused_relevance_{isa}_{key}"
        t0 = time.perf_counter()
        try:
            from torch.utils import cpp_extension

            kw = {}
            if "no_implicit_headers" in inspect.signature(cpp_extension.load_inline).parameters:
                kw["no_implicit_headers"] = True  # pybind11 + ATen/Parallel.h only: 4x faster
            root = os.environ.get(ENV_BUILD_DIR)
            if root:
                kw["build_directory"] = str(Path(root) / name)
                Path(kw["build_directory"]).mkdir(parents=True, exist_ok=True)
            _clear_stale_lock(cpp_extension, kw.get("build_directory"), name)
            mod = cpp_extension.load_inline(name, [_SOURCE], extra_cflags=flags,
                                            extra_ldflags=["-fopenmp"], verbose=False, **kw)
        except Exception as exc:  # noqa: BLE001 - any build failure means: use PyTorch
            text = str(exc).strip().splitlines()
            _tell_once(f"build-{isa}", logging.WARNING,
                       "fused relevance kernel (%s) could not be built, using the PyTorch "
                       "expression instead (slower, same result): %s: %s", isa,
                       type(exc).__name__, " | ".join(text[-6:]))
            mod = None
        build_seconds[isa] = time.perf_counter() - t0
        _modules[isa] = mod
        return mod


def kernel_available() -> bool:
    return load_kernel() is not None


def _kernel_for(g: torch.Tensor, vt: torch.Tensor):
    """The extension when it may serve these tensors, else None (reason logged once)."""
    if not enabled():
        return None
    if g.device.type != "cpu" or vt.device.type != "cpu":
        _tell_once(f"device-{g.device.type}", logging.INFO,
                   "fused relevance kernel is CPU-only; using the PyTorch expression on %s",
                   g.device.type)
        return None
    if g.dtype not in _DTYPES or vt.dtype != g.dtype:
        _tell_once(f"dtype-{g.dtype}-{vt.dtype}", logging.INFO,
                   "fused relevance kernel takes float32/float64; using the PyTorch "
                   "expression for %s x %s", g.dtype, vt.dtype)
        return None
    if vt.requires_grad and torch.is_grad_enabled():
        _tell_once("vt-grad", logging.INFO,
                   "fused relevance kernel has no gradient for vt; using the PyTorch "
                   "expression because vt requires one")
        return None
    if g.numel() == 0 or vt.numel() == 0:
        return None
    return load_kernel()


def _check_shapes(g: torch.Tensor, vt: torch.Tensor) -> None:
    if g.dim() != 4 or vt.dim() != 3 or g.shape[1] != vt.shape[0] or g.shape[2] != vt.shape[2] \
            or g.shape[3] != vt.shape[1]:
        raise ValueError(f"relu_colsum needs g (P, H, N, d) and vt (H, d, N), got "
                         f"{tuple(g.shape)} and {tuple(vt.shape)}")


def _forward(mod, g: torch.Tensor, vt: torch.Tensor, keep_mask: bool):
    p, h, n, d = g.shape
    out = torch.empty((p, h, n), dtype=g.dtype, device=g.device)
    mask = (torch.zeros((p * h, n, (n + 63) // 64), dtype=torch.int64, device=g.device)
            if keep_mask else None)
    mod.forward(_DTYPES[g.dtype], g.data_ptr(), vt.data_ptr(), out.data_ptr(),
                mask.data_ptr() if keep_mask else 0, p, h, n, d)
    return out, mask


class _ReluColsum(torch.autograd.Function):
    """(P, H, N, d) g, (H, d, N) vt -> (P, H, N) column sums of ReLU(g @ vt)."""

    @staticmethod
    def forward(ctx, g, vt, mod):
        out, mask = _forward(mod, g, vt, keep_mask=True)
        ctx.mod = mod
        ctx.save_for_backward(vt, mask)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, w):
        vt, mask = ctx.saved_tensors  # vt arrives detached: no gradient for it, ever
        if not ctx.needs_input_grad[0]:
            return None, None, None
        h, d, n = vt.shape
        w = w.to(vt.dtype).contiguous()
        p = w.shape[0]
        gg = torch.empty((p, h, n, d), dtype=vt.dtype, device=vt.device)
        ctx.mod.backward(_DTYPES[vt.dtype], w.data_ptr(), vt.data_ptr(), mask.data_ptr(),
                         gg.data_ptr(), p, h, n, d)
        return gg, None, None


def relu_colsum(g: torch.Tensor, vt: torch.Tensor) -> torch.Tensor:
    """``(g @ vt).clamp(min=0).sum(-2)`` without the (..., N, N) product.

    ``g`` is (P, H, N, d) or (B, N, d), ``vt`` is (H, d, N) (shared by the P masks) or
    (B, d, N); the result is (P, H, N) or (B, N). Differentiable in ``g`` (not in ``vt``).
    """
    squeeze = g.dim() == 3
    g4 = g[None] if squeeze else g
    _check_shapes(g4, vt)
    mod = _kernel_for(g4, vt)
    if mod is None:
        out = (g4 @ vt).clamp(min=0).sum(-2)
    else:
        g4, vtc = g4.contiguous(), vt.detach().contiguous()
        if torch.is_grad_enabled() and g4.requires_grad:
            out = _ReluColsum.apply(g4, vtc, mod)
        else:
            out = _forward(mod, g4.detach(), vtc, keep_mask=False)[0]
    return out[0] if squeeze else out


def fused_relevance(gh: torch.Tensor, vt: torch.Tensor) -> torch.Tensor:
    """``relevance_from_grad(gh @ vt[None])`` -- (P, H, N, d) x (H, d, N) -> (P, N-1) patch
    relevance (ReLU, mean over heads and rows, CLS column dropped) -- through the fused
    kernel when it serves these tensors, else exactly that expression."""
    _check_shapes(gh, vt)
    if _kernel_for(gh, vt) is None:
        return relevance_from_grad(gh @ vt[None])
    h, n = gh.shape[1], gh.shape[2]
    return relu_colsum(gh, vt).sum(1)[:, 1:] / (h * n)
