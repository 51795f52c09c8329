"""NumPy timing of one all-layers grid, for comparison with benches/grid.rs.

Usage: grid_numpy.py DIR MEASURE N_A N_B OUT.npy

Reads the layers DIR/a_XX.npy and DIR/b_XX.npy, computes MEASURE (a
canonical repatlas name) for every pair with the same formulas and the same
per-layer reuse as repatlas, writes the grid (row-major, layer_a by layer_b)
to OUT.npy and prints the seconds taken. Loading the files is not timed.
Kendall's tau uses scipy.stats.kendalltau, which equals tau-a when the RDMs
have no ties.
"""

import sys
import time

import numpy as np


def centre(x):
    return x - x.mean(axis=0)


def centred_gram(x):
    xc = centre(x)
    return xc @ xc.T


def double_centre(k):
    return k - k.mean(axis=0) - k.mean(axis=1)[:, None] + k.mean()


def sq_dists(x):
    xc = centre(x)
    g = xc @ xc.T
    d = np.diag(g)
    return np.maximum(d[:, None] + d[None, :] - 2 * g, 0.0)


def rbf_gram(x, f):
    d = sq_dists(x)
    iu = np.triu_indices(d.shape[0], 1)
    sigma2 = f * f * np.median(d[iu])
    return double_centre(np.exp(-d / (2 * sigma2)))


def hsic_u_terms(k):
    """Per-layer terms of the unbiased HSIC on a double-centred Gram."""
    diag = np.diag(k).copy()
    rows = k.sum(axis=1)
    return k, diag, rows


def hsic_u(a, b):
    (k, dk, rk), (l, dl, rl) = a, b
    n = k.shape[0]
    cross = np.vdot(k, l)
    trace = cross - dk @ dl
    sk, sl = rk.sum() - dk.sum(), rl.sum() - dl.sum()
    row = (rk - dk) @ (rl - dl)
    return (trace + sk * sl / ((n - 1) * (n - 2)) - 2 * row / (n - 2)) / (n * (n - 3))


def cka_grid(prep_a, prep_b, debiased):
    if debiased:
        sa = [hsic_u(p, p) for p in prep_a]
        sb = [hsic_u(p, p) for p in prep_b]
        return np.array([[hsic_u(p, q) / np.sqrt(x * y) for q, y in zip(prep_b, sb)]
                         for p, x in zip(prep_a, sa)])
    ka = np.stack([p[0].ravel() for p in prep_a])
    kb = np.stack([p[0].ravel() for p in prep_b])
    cross = ka @ kb.T
    return cross / np.outer(np.linalg.norm(ka, axis=1), np.linalg.norm(kb, axis=1))


def minibatch_prep(x, batch):
    n = x.shape[0]
    bounds = [(s, min(s + batch, n)) for s in range(0, n, batch)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] < 4:
        last = bounds.pop()
        bounds[-1] = (bounds[-1][0], last[1])
    batches = [hsic_u_terms(centred_gram(x[s:e])) for s, e in bounds]
    return batches, np.mean([hsic_u(b, b) for b in batches])


def minibatch_grid(prep_a, prep_b):
    return np.array([[np.mean([hsic_u(p, q) for p, q in zip(ba, bb)]) / np.sqrt(sa * sb)
                      for bb, sb in prep_b] for ba, sa in prep_a])


def rank_average(v):
    from scipy.stats import rankdata
    return rankdata(v)


def rdm(x, method):
    n = x.shape[0]
    iu = np.triu_indices(n, 1)
    if method == "correlation":
        z = x - x.mean(axis=1, keepdims=True)
        z /= np.linalg.norm(z, axis=1, keepdims=True)
        return 1 - (z @ z.T)[iu]
    if method == "cosine":
        z = x / np.linalg.norm(x, axis=1, keepdims=True)
        return 1 - (z @ z.T)[iu]
    return sq_dists(x)[iu] / x.shape[1]


def unit(v, centred):
    if centred:
        v = v - v.mean()
    return v / np.linalg.norm(v)


def rsa_grid(a, b, method, compare):
    if compare == "kendall_tau_a":
        from scipy.stats import kendalltau
        ra = [rdm(x, method) for x in a]
        rb = [rdm(y, method) for y in b]
        return np.array([[kendalltau(p, q).statistic for q in rb] for p in ra])
    if compare == "spearman":
        prep = lambda x: unit(rank_average(rdm(x, method)), True)
    elif compare == "pearson":
        prep = lambda x: unit(rdm(x, method), True)
    else:
        prep = lambda x: unit(rdm(x, method), False)
    va = np.stack([prep(x) for x in a])
    vb = np.stack([prep(y) for y in b])
    return va @ vb.T


def procrustes_grid(a, b):
    pa = [(centre(x), np.linalg.norm(centre(x))) for x in a]
    pb = [(centre(y), np.linalg.norm(centre(y))) for y in b]
    out = np.empty((len(a), len(b)))
    for i, (xa, na) in enumerate(pa):
        for j, (xb, nb) in enumerate(pb):
            nuc = np.linalg.svd(xa.T @ xb, compute_uv=False).sum()
            out[i, j] = np.arccos(np.clip(nuc / (na * nb), -1, 1))
    return out


def basis(x, keep=None):
    xc = centre(x)
    u, s, vt = np.linalg.svd(xc, full_matrices=False)
    rank = int((s > s.max() * max(xc.shape) * np.finfo(float).eps).sum())
    if keep is None:
        return u[:, :rank], s[:rank, None] * vt[:rank]
    kind, value = keep
    if kind == "k":
        k = value
    else:
        frac = np.cumsum(s ** 2) / np.sum(s ** 2)
        k = int(np.searchsorted(frac, value) + 1)
    return u[:, :k], None


def cca_grid(a, b, mode, keep=None):
    pa = [basis(x, keep) for x in a]
    pb = [basis(y, keep) for y in b]
    out = np.empty((len(a), len(b)))
    for i, (qa, wa) in enumerate(pa):
        for j, (qb, _) in enumerate(pb):
            m = qa.T @ qb
            if mode == "pwcca":
                u, rho, _ = np.linalg.svd(m, full_matrices=False)
                rho = np.clip(rho, 0, 1)
                alpha = np.abs(u[:, : len(rho)].T @ wa).sum(axis=1)
                out[i, j] = alpha @ rho / alpha.sum()
            else:
                rho = np.clip(np.linalg.svd(m, compute_uv=False), 0, 1)
                out[i, j] = np.mean(rho ** 2) if mode == "mean_sq" else np.mean(rho)
    return out


def neighbours(x, k):
    z = x / np.linalg.norm(x, axis=1, keepdims=True)
    s = z @ z.T
    np.fill_diagonal(s, -np.inf)
    idx = np.argsort(-s, axis=1, kind="stable")[:, :k]
    mask = np.zeros(s.shape, dtype=bool)
    np.put_along_axis(mask, idx, True, axis=1)
    np.fill_diagonal(s, 1.0)
    return mask, s


def masked_hsic(mask, k, l):
    n = k.shape[0]
    kt, lt = mask * k, mask * l
    trace = np.vdot(kt, lt.T)
    row = kt.sum(axis=0) @ lt.sum(axis=1)
    return (trace + kt.sum() * lt.sum() / ((n - 1) * (n - 2)) - 2 * row / (n - 2)) / (n * (n - 3))


def knn_grid(a, b, k, cknna):
    pa = [neighbours(x, k) for x in a]
    pb = [neighbours(y, k) for y in b]
    if not cknna:
        ma = np.stack([m.ravel() for m, _ in pa]).astype(np.float64)
        mb = np.stack([m.ravel() for m, _ in pb]).astype(np.float64)
        return (ma @ mb.T) / (a[0].shape[0] * k)
    sa = [masked_hsic(m, s, s) for m, s in pa]
    sb = [masked_hsic(m, s, s) for m, s in pb]
    return np.array([[masked_hsic(ma & mb, ka, kb) / np.sqrt(x * y)
                      for (mb, kb), y in zip(pb, sb)] for (ma, ka), x in zip(pa, sa)])


def grid(measure, a, b):
    name, _, params = measure.partition(":")
    kv = dict(p.split("=") for p in params.split(",") if p)
    if name in ("linear_cka", "linear_cka_debiased"):
        prep_a = [hsic_u_terms(centred_gram(x)) for x in a]
        prep_b = [hsic_u_terms(centred_gram(y)) for y in b]
        return cka_grid(prep_a, prep_b, name.endswith("debiased"))
    if name in ("rbf_cka", "rbf_cka_debiased"):
        f = float(kv.get("f", 1.0))
        prep_a = [hsic_u_terms(rbf_gram(x, f)) for x in a]
        prep_b = [hsic_u_terms(rbf_gram(y, f)) for y in b]
        return cka_grid(prep_a, prep_b, name.endswith("debiased"))
    if name == "minibatch_cka":
        batch = int(kv["batch"])
        return minibatch_grid([minibatch_prep(x, batch) for x in a],
                              [minibatch_prep(y, batch) for y in b])
    if name == "rsa":
        return rsa_grid(a, b, kv["rdm"], kv["compare"])
    if name == "procrustes_angular":
        return procrustes_grid(a, b)
    if name == "svcca":
        keep = ("k", int(kv["k"])) if "k" in kv else ("var", float(kv["var"]))
        return cca_grid(a, b, "mean", keep)
    if name == "pwcca":
        return cca_grid(a, b, "pwcca")
    if name == "cca_mean_sq":
        return cca_grid(a, b, "mean_sq")
    if name in ("mutual_knn", "cknna"):
        return knn_grid(a, b, int(kv["k"]), name == "cknna")
    raise SystemExit(f"unknown measure {measure}")


def main():
    folder, measure, n_a, n_b, out = sys.argv[1:6]
    a = [np.load(f"{folder}/a_{i:02d}.npy") for i in range(int(n_a))]
    b = [np.load(f"{folder}/b_{j:02d}.npy") for j in range(int(n_b))]
    start = time.perf_counter()
    values = grid(measure, a, b)
    seconds = time.perf_counter() - start
    np.save(out, np.asarray(values, dtype=np.float64))
    print(f"{seconds:.6f}")


if __name__ == "__main__":
    main()
