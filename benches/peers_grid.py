"""Python peers of the all-layers compare grid, timed for benches/peers.rs.

Usage: peers_grid.py TOOL DIR MEASURE N_A N_B REPEATS OUT.npy [PAIRS]

TOOL is `loop` (NumPy, one pair at a time, every kernel or RDM rebuilt for
each pair, as analysis notebooks usually write it) or `rsatoolbox` (RDMs
from rsatoolbox.rdm.calc_rdm and one rsatoolbox.rdm.compare call over all
layers). Reads DIR/a_XX.npy and DIR/b_XX.npy, computes MEASURE for the
first PAIRS pairs in row-major order (all of them by default), repeats the
computation REPEATS times, writes the values of the last repeat to OUT.npy
and prints one JSON object: the seconds of each repeat and the number of
pairs timed. Loading the files is not timed.
"""

import json
import sys
import time

import numpy as np


def centre_gram(k):
    """Double-centres a Gram matrix by subtracting row and column means."""
    return k - k.mean(axis=0) - k.mean(axis=1)[:, None] + k.mean()


def linear_cka(x, y):
    """Biased-HSIC linear CKA from freshly built centred Gram matrices."""
    k = centre_gram(x @ x.T)
    l = centre_gram(y @ y.T)
    return np.sum(k * l) / np.sqrt(np.sum(k * k) * np.sum(l * l))


def unbiased_hsic(k, l):
    """Song et al. (2012) unbiased HSIC, Grams with zeroed diagonals."""
    n = k.shape[0]
    k = k.copy()
    l = l.copy()
    np.fill_diagonal(k, 0.0)
    np.fill_diagonal(l, 0.0)
    trace = np.sum(k * l)
    sums = k.sum() * l.sum() / ((n - 1) * (n - 2))
    rows = 2.0 * (k.sum(axis=0) @ l.sum(axis=0)) / (n - 2)
    return (trace + sums - rows) / (n * (n - 3))


def linear_cka_debiased(x, y):
    xc = x - x.mean(axis=0)
    yc = y - y.mean(axis=0)
    k = xc @ xc.T
    l = yc @ yc.T
    return unbiased_hsic(k, l) / np.sqrt(unbiased_hsic(k, k) * unbiased_hsic(l, l))


def correlation_rdm(x):
    """Upper triangle of 1 - Pearson correlation between stimulus rows."""
    c = np.corrcoef(x)
    iu = np.triu_indices(x.shape[0], k=1)
    return 1.0 - c[iu]


def rank(v):
    from scipy.stats import rankdata

    return rankdata(v)


def rsa_spearman(x, y):
    return np.corrcoef(rank(correlation_rdm(x)), rank(correlation_rdm(y)))[0, 1]


LOOP = {
    "linear_cka": linear_cka,
    "linear_cka_debiased": linear_cka_debiased,
    "rsa:rdm=correlation,compare=spearman": rsa_spearman,
}


def pairs(n_a, n_b, limit):
    out = [(i, j) for i in range(n_a) for j in range(n_b)]
    return out[:limit] if limit else out


def run_loop(a, b, measure, todo):
    f = LOOP[measure]
    return np.array([f(a[i], b[j]) for i, j in todo])


def run_rsatoolbox(a, b, measure, todo):
    if measure != "rsa:rdm=correlation,compare=spearman":
        raise SystemExit(f"rsatoolbox runs only the correlation/Spearman RSA, not {measure}")
    import rsatoolbox

    rows = sorted({i for i, _ in todo})
    cols = sorted({j for _, j in todo})

    def rdms(layers, keep):
        data = [rsatoolbox.data.Dataset(layers[k]) for k in keep]
        return rsatoolbox.rdm.calc_rdm(data, method="correlation")

    values = rsatoolbox.rdm.compare(rdms(a, rows), rdms(b, cols), method="spearman")
    index = {(i, j): (rows.index(i), cols.index(j)) for i, j in todo}
    return np.array([values[index[p]] for p in todo])


def main():
    tool, folder, measure, n_a, n_b, repeats, out = sys.argv[1:8]
    limit = int(sys.argv[8]) if len(sys.argv) > 8 else 0
    n_a, n_b, repeats = int(n_a), int(n_b), int(repeats)
    a = [np.load(f"{folder}/a_{i:02}.npy") for i in range(n_a)]
    b = [np.load(f"{folder}/b_{j:02}.npy") for j in range(n_b)]
    todo = pairs(n_a, n_b, limit)
    run = {"loop": run_loop, "rsatoolbox": run_rsatoolbox}[tool]
    seconds = []
    values = None
    for _ in range(repeats):
        start = time.perf_counter()
        values = run(a, b, measure, todo)
        seconds.append(time.perf_counter() - start)
    np.save(out, values)
    print(json.dumps({"seconds": seconds, "pairs": len(todo)}))


if __name__ == "__main__":
    main()
