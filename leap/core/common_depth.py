"""Common-depth scoring: compare two early-exited inputs at the depth both reached.

Early exit mixes depths: a sentence that stopped at layer 3 is compared with one that ran
all 6. Even with per-layer maps into the last layer's space (:mod:`leap.core.layer_maps`), such
a cross-depth cosine is noisier than a same-depth one, and on the CPU-scale runs that
*mixing* cost ate the whole gain of the exit rule's choice of which inputs stop early
(``leap.workflow.frontier.decompose_advantage``; README "The frontier").

Common-depth scoring removes the cross-depth comparison without extra compute: an input
that ran to layer ``l_a`` has, on the way, passed every layer below it, so the exit loop
can keep its (mapped, normalised) vector at each layer the rule read
(:meth:`leap.serving.model.ExitSentenceTransformer.encode_with_layer_stack`). Two inputs are
then compared at ``min(l_a, l_b)``, a depth both have. The compute per input is its own
exit depth (as plain early exit); the cost moves to storage (up to ``L - l_min + 1``
vectors per input) and to scoring (one similarity per depth).

Not in the paper; named ``common_depth`` wherever it appears (frontier rule, tables).

Shapes: a *layer stack* is ``[N, L, d]`` float (L2-normalised rows at the layers an input
reached from the first layer its rule read; zeros elsewhere), with ``layers [N]`` 1-based
exit layers.
"""

from __future__ import annotations

import numpy as np

from leap.errors import LeapError


def _check(stack: np.ndarray, layers: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    stack, layers = np.asarray(stack), np.asarray(layers, dtype=np.int64)
    if stack.ndim != 3 or layers.shape != (stack.shape[0],):
        raise LeapError(
            f"{name}: expected a layer stack [N, L, d] and exit layers [N], got {stack.shape} and {layers.shape}"
        )
    if len(layers) and (layers.min() < 1 or layers.max() > stack.shape[1]):
        raise LeapError(f"{name}: exit layers must lie in 1..{stack.shape[1]}")
    return stack, layers


def pair_similarity(stack: np.ndarray, layers: np.ndarray, i1: np.ndarray, i2: np.ndarray) -> np.ndarray:
    """``[P]`` cosine of pairs ``(i1[k], i2[k])`` at their common depth ``min(l_a, l_b)``."""
    stack, layers = _check(stack, layers, "pair_similarity")
    i1, i2 = np.asarray(i1), np.asarray(i2)
    depth = np.minimum(layers[i1], layers[i2]) - 1  # [P], 0-based
    return (stack[i1, depth] * stack[i2, depth]).sum(-1)


def similarity(stack_a: np.ndarray, layers_a: np.ndarray, stack_b: np.ndarray, layers_b: np.ndarray) -> np.ndarray:
    """``[Na, Nb]`` cosine of every ``a`` with every ``b`` at their common depth (retrieval:
    queries against documents). One matrix product per depth that occurs."""
    stack_a, layers_a = _check(stack_a, layers_a, "similarity (a)")
    stack_b, layers_b = _check(stack_b, layers_b, "similarity (b)")
    if stack_a.shape[1:] != stack_b.shape[1:]:
        raise LeapError(f"layer stacks of different shapes: {stack_a.shape[1:]} and {stack_b.shape[1:]}")
    depth = np.minimum(layers_a[:, None], layers_b[None, :])  # [Na, Nb]
    out = np.zeros(depth.shape, dtype=np.float32)
    for l in np.unique(depth):
        ra = np.flatnonzero(layers_a >= l)  # rows of a that reached l
        rb = np.flatnonzero(layers_b >= l)
        sims = stack_a[ra, l - 1] @ stack_b[rb, l - 1].T  # [ra, rb]
        sel = depth[np.ix_(ra, rb)] == l
        out[np.ix_(ra, rb)] = np.where(sel, sims, out[np.ix_(ra, rb)])
    return out


def stack_from_layer_vectors(unit_vectors: np.ndarray, layers: np.ndarray) -> np.ndarray:
    """``[L, N, d]`` normalised vectors of a full pass and exit layers -> the ``[N, L, d]``
    layer stack the exit loop would keep (every layer up to each exit; the reference the
    fast path is tested against)."""
    u = np.asarray(unit_vectors)
    layers = np.asarray(layers, dtype=np.int64)
    stack = np.transpose(u, (1, 0, 2)).copy()  # [N, L, d]
    reached = np.arange(1, u.shape[0] + 1)[None, :] <= layers[:, None]  # [N, L]
    stack[~reached] = 0.0
    return stack
