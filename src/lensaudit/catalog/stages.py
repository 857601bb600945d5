"""Stage functions of the training-set build: plain functions over pandas batches.

Both engines call exactly these functions; an engine only decides where they run and how
their outputs are gathered (:mod:`lensaudit.catalog.engines`).

Per sweep (``process_sweep``): bad-coordinate check, the counted negative-pool cut flow,
confuser tagging (N1/N2 and category), z-exposure bin, HEALPix pixel, stable order hash, and
the candidate cross-match. After gathering: ``nearest_matches`` and ``resolve_positives``
(one Tractor source per candidate and vice versa), ``sampling_quotas`` per stratum, and
``take_top_k`` (the reference top-K by stable hash that the Spark engine reproduces with a
window), then ``assemble_manifest``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from lensaudit.artifacts.identity import healpix_nested, object_id
from lensaudit.catalog.candidates import CatalogInputError
from lensaudit.catalog.config import CatalogConfig
from lensaudit.catalog.spatial import nearest_within, unit_vectors
from lensaudit.survey.maskbits import has_any_bits
from lensaudit.survey.photometry import ellipticity_modulus, flux_to_mag
from lensaudit.utils.hashing import hash64

#: Cuts of the negative pool, in the order they are applied and counted.
CUT_ORDER = ("bad_coordinates", "footprint_dec", "nobs_grz", "mag_z", "type", "maskbits", "near_candidate")

#: Columns of the per-object rows both engines pass around (name -> pandas dtype).
ROW_COLUMNS: dict[str, str] = {
    "id": "object", "release": "int16", "brickid": "int32", "brickname": "object", "objid": "int32",
    "ra": "float64", "dec": "float64", "type": "object", "nobs_z": "int16", "nobs_z_bin": "object",
    "flux_r": "float32", "psfsize_g": "float32", "psfsize_r": "float32", "psfsize_z": "float32",
    "psfdepth_g": "float32", "psfdepth_r": "float32", "psfdepth_z": "float32", "galdepth_r": "float32",
    "ebv": "float32", "healpix": "int64", "order_hash": "int64",
    "pool": "object", "confuser_category": "object",
    "mag_z": "float32", "g_r": "float32", "shape_r": "float32", "host_cell": "int16",
}
#: Host properties the host-matched sampling can match (z AB mag from FLUX_Z, g - r AB colour, SHAPE_R arcsec).
HOST_QUANTITIES = ("mag_z", "g_r", "shape_r")
#: The stratum of the sampling: z-exposure bin, type, host cell (0 unless host matching) and pool.
STRATUM_KEY = ["nobs_z_bin", "type", "host_cell", "pool"]
MATCH_COLUMNS: dict[str, str] = {**ROW_COLUMNS, "cand_idx": "int64", "match_sep_arcsec": "float64"}

SWEEP_COLUMNS_USED = (
    "RELEASE", "BRICKID", "BRICKNAME", "OBJID", "TYPE", "RA", "DEC", "EBV", "FLUX_G", "FLUX_R", "FLUX_Z",
    "NOBS_G", "NOBS_R", "NOBS_Z", "PSFSIZE_G", "PSFSIZE_R", "PSFSIZE_Z", "PSFDEPTH_G", "PSFDEPTH_R",
    "PSFDEPTH_Z", "GALDEPTH_R", "SHAPE_R", "SHAPE_E1", "SHAPE_E2", "SERSIC", "MASKBITS",
)


def nobs_bin_labels(edges: tuple[int, ...]) -> list[str]:
    """Labels of z-exposure bins with lower edges ``edges``: (3, 6, 11) -> 3-5, 6-10, 11+ (and <3 below)."""
    labels = [f"<{edges[0]}"]
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        labels.append(f"{lo}-{hi - 1}")
    labels.append(f"{edges[-1]}+")
    return labels


def nobs_z_bin(nobs_z: np.ndarray, edges: tuple[int, ...]) -> np.ndarray:
    labels = np.asarray(nobs_bin_labels(edges), dtype=object)
    return labels[np.searchsorted(np.asarray(edges), np.asarray(nobs_z), side="right")]


def confuser_category(df: pd.DataFrame, cfg: CatalogConfig) -> np.ndarray:
    """Hard-confuser category from catalog proxies ('' when none); the first matching proxy in ``order`` wins."""
    c = cfg.confusers
    t = df["TYPE"].to_numpy(dtype=object)
    flux_r = df["FLUX_R"].to_numpy(np.float64)
    shape_r = df["SHAPE_R"].to_numpy(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mag_g, mag_r = flux_to_mag(df["FLUX_G"].to_numpy()), flux_to_mag(flux_r)
    tests = {
        "ring": ((t == "DEV") | ((t == "SER") & (df["SERSIC"].to_numpy() >= c.ring_min_sersic)))
        & (flux_r >= c.ring_min_flux_r),
        "edge_on": (ellipticity_modulus(df["SHAPE_E1"], df["SHAPE_E2"]) >= c.edge_on_min_ellipticity)
        & (shape_r >= c.edge_on_min_shape_r),
        "blue_clumpy": (mag_g - mag_r <= c.blue_max_g_minus_r) & (mag_r <= c.blue_max_mag_r),
        "large_galaxy": (shape_r >= c.large_min_shape_r) & (flux_r >= c.large_min_flux_r),
    }
    out = np.full(len(df), "", dtype=object)
    for name in reversed(c.order):  # earlier names overwrite later ones
        out[np.nan_to_num(tests[name], nan=False).astype(bool)] = name
    return out


def _rows(df: pd.DataFrame, cfg: CatalogConfig) -> pd.DataFrame:
    """Per-object output columns of sweep rows (all derived values computed here, once)."""
    brick = df["BRICKNAME"].to_numpy(dtype=object)
    objid = df["OBJID"].to_numpy()
    ids = object_id(brick, objid)
    cat = confuser_category(df, cfg)
    with np.errstate(invalid="ignore", divide="ignore"):
        mag = {b: flux_to_mag(df[f"FLUX_{b}"].to_numpy(np.float64)) for b in "GRZ"}
    out = pd.DataFrame({
        "id": ids, "release": df["RELEASE"].to_numpy(), "brickid": df["BRICKID"].to_numpy(), "brickname": brick,
        "objid": objid, "ra": df["RA"].to_numpy(), "dec": df["DEC"].to_numpy(), "type": df["TYPE"].to_numpy(dtype=object),
        "nobs_z": df["NOBS_Z"].to_numpy(), "nobs_z_bin": nobs_z_bin(df["NOBS_Z"].to_numpy(), cfg.sampling.nobs_z_bins),
        "flux_r": df["FLUX_R"].to_numpy(),
        **{f"psfsize_{b}": df[f"PSFSIZE_{b.upper()}"].to_numpy() for b in "grz"},
        **{f"psfdepth_{b}": df[f"PSFDEPTH_{b.upper()}"].to_numpy() for b in "grz"},
        "galdepth_r": df["GALDEPTH_R"].to_numpy(), "ebv": df["EBV"].to_numpy(),
        "healpix": healpix_nested(df["RA"].to_numpy(), df["DEC"].to_numpy(), cfg.splits.nside),
        "order_hash": hash64(df["RELEASE"].to_numpy(), df["BRICKID"].to_numpy(), objid,
                             cfg.sampling.seed).view(np.int64),
        "pool": np.where(cat == "", "N1", "N2").astype(object), "confuser_category": cat,
        "mag_z": mag["Z"], "g_r": mag["G"] - mag["R"], "shape_r": df["SHAPE_R"].to_numpy(), "host_cell": 0,
    })
    return out.astype(ROW_COLUMNS)


def empty_rows(columns: dict[str, str] = ROW_COLUMNS) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in columns.items()})


def process_sweep(df: pd.DataFrame, cfg: CatalogConfig, cands: pd.DataFrame, source: str = "sweep"):
    """Per-sweep work: returns (eligible negatives, candidate matches, ordered cut-flow counts).

    ``df`` holds the sweep columns in :data:`SWEEP_COLUMNS_USED` (TYPE/BRICKNAME as str);
    ``cands`` the candidate catalog (``ra``, ``dec``) whose row index is the candidate index.
    Each cut's count is the number of rows it removed after the cuts before it.
    """
    cut = cfg.cuts
    n = len(df)
    flow = {"rows_in": n}
    ra, dec = df["RA"].to_numpy(np.float64), df["DEC"].to_numpy(np.float64)
    good = np.isfinite(ra) & np.isfinite(dec) & (ra >= 0) & (ra < 360) & (dec >= -90) & (dec <= 90)
    if not good.all() and cfg.on_bad_rows == "error":
        bad = np.flatnonzero(~good)
        ex = [f"{df['BRICKNAME'].iat[i]}_{df['OBJID'].iat[i]}" for i in bad[:5]]
        raise CatalogInputError(f"{source}: {bad.size} row(s) with NaN or out-of-range RA/DEC, e.g. {ex}")
    tree = cKDTree(unit_vectors(cands["ra"].to_numpy(), cands["dec"].to_numpy()))
    ok_ra, ok_dec = np.where(good, ra, 0.0), np.where(good, dec, 0.0)
    radius = max(cut.exclusion_radius_arcsec, cfg.positives.match_radius_arcsec)
    idx, sep = nearest_within(tree, ok_ra, ok_dec, radius, k=2)
    sep = np.where(good[:, None], sep, np.inf)

    # --- candidate matches (every pair within the match radius; reduced after gathering)
    pair_row, pair_k = np.nonzero(sep <= cfg.positives.match_radius_arcsec)
    if pair_row.size:
        matches = _rows(df.iloc[pair_row].reset_index(drop=True), cfg)
        matches["cand_idx"] = idx[pair_row, pair_k].astype(np.int64)
        matches["match_sep_arcsec"] = sep[pair_row, pair_k]
    else:
        matches = empty_rows(MATCH_COLUMNS)

    # --- negative-pool cut flow
    mag_z = np.full(n, np.inf)
    fz = df["FLUX_Z"].to_numpy(np.float64)
    mag_z[fz > 0] = flux_to_mag(fz[fz > 0])
    tests = {
        "bad_coordinates": good,
        "footprint_dec": (dec > cut.dec_min_deg) & (dec < cut.dec_max_deg),
        "nobs_grz": (df["NOBS_G"].to_numpy() >= cut.min_nobs) & (df["NOBS_R"].to_numpy() >= cut.min_nobs)
        & (df["NOBS_Z"].to_numpy() >= cut.min_nobs),
        "mag_z": mag_z < cut.max_mag_z,
        "type": df["TYPE"].isin(list(cut.types)).to_numpy(),
        "maskbits": ~has_any_bits(df["MASKBITS"].to_numpy(), cut.excluded_maskbits),
        "near_candidate": sep[:, 0] > cut.exclusion_radius_arcsec,
    }
    keep = np.ones(n, dtype=bool)
    for name in CUT_ORDER:
        after = keep & tests[name]
        flow[name] = int(keep.sum() - after.sum())
        keep = after
    flow["rows_eligible"] = int(keep.sum())
    neg = _rows(df[keep].reset_index(drop=True), cfg) if keep.any() else empty_rows()
    return neg, matches, flow


def nearest_matches(matches: pd.DataFrame) -> pd.DataFrame:
    """Reference reduction: for each candidate, its nearest source (ties by order hash, then id)."""
    m = matches.sort_values(["cand_idx", "match_sep_arcsec", "order_hash", "id"], kind="mergesort")
    return m.drop_duplicates("cand_idx", keep="first").reset_index(drop=True)


def resolve_positives(nearest: pd.DataFrame, cands: pd.DataFrame, cfg: CatalogConfig):
    """Positives from the nearest match per candidate; returns (positives, unmatched report rows).

    A source claimed by two candidates goes to the nearer one (then the lower candidate index);
    the other candidate is reported as unmatched with the reason.
    """
    m = nearest.sort_values(["id", "match_sep_arcsec", "cand_idx"], kind="mergesort")
    first = ~m["id"].duplicated(keep="first")
    taken = m[~first]
    pos = m[first].copy()
    c = cands.reset_index(drop=True)
    pos["name"] = c["name"].to_numpy()[pos["cand_idx"].to_numpy()]
    pos["zlens"] = c["zlens"].to_numpy()[pos["cand_idx"].to_numpy()]
    pos["tier"] = c["tier"].to_numpy()[pos["cand_idx"].to_numpy()]
    unmatched = []
    owner = dict(zip(pos["id"], pos["name"], strict=True))
    for _, r in taken.iterrows():
        unmatched.append({"name": c.at[int(r.cand_idx), "name"], "ra": float(c.at[int(r.cand_idx), "ra"]),
                          "dec": float(c.at[int(r.cand_idx), "dec"]),
                          "reason": f"nearest source {r.id} is already matched to {owner[r.id]}"})
    seen = set(nearest["cand_idx"].tolist())
    for i in range(len(c)):
        if i not in seen:
            unmatched.append({"name": c.at[i, "name"], "ra": float(c.at[i, "ra"]), "dec": float(c.at[i, "dec"]),
                              "reason": f"no Tractor source within {cfg.positives.match_radius_arcsec} arcsec"})
    unmatched.sort(key=lambda r: r["name"])
    return pos.sort_values("id", kind="mergesort").reset_index(drop=True), unmatched


def host_edges(pos: pd.DataFrame, cfg: CatalogConfig) -> dict[str, list[float]]:
    """Inner quantile edges of the positives per host quantity (empty unless host matching is on)."""
    hm = cfg.sampling.host_match
    if not hm.enabled or not len(pos):
        return {}
    qs = np.arange(1, hm.bins) / hm.bins
    out = {}
    for q in hm.quantities:
        v = pos[q].to_numpy(np.float64)
        v = v[np.isfinite(v)]
        out[q] = [float(x) for x in np.unique(np.quantile(v, qs))] if len(v) else []
    return out


def assign_host_cells(df: pd.DataFrame, edges: dict[str, list[float]]) -> pd.DataFrame:
    """``host_cell``: the cell of each row on the grid of ``edges`` (0 everywhere when there are none).

    Cell = sum over quantities of (bin index) x (bins of the earlier quantities); NaN falls in the last bin."""
    cell = np.zeros(len(df), dtype=np.int64)
    stride = 1
    for q, e in edges.items():
        v = df[q].to_numpy(np.float64)
        d = np.searchsorted(np.asarray(e, dtype=np.float64), np.where(np.isfinite(v), v, np.inf), side="right")
        cell += d * stride
        stride *= len(e) + 1
    return df.assign(host_cell=cell.astype(np.int16))


def sampling_quotas(pos: pd.DataFrame, cfg: CatalogConfig) -> pd.DataFrame:
    """Negatives wanted per (nobs_z_bin, type, host_cell, pool): ratio x positives, split N1:N2 by ``n2_fraction``.

    ``pos`` carries ``host_cell`` (all 0 without host matching)."""
    s = cfg.sampling
    if "host_cell" not in pos:
        pos = pos.assign(host_cell=np.int16(0))
    counts = pos.groupby(["nobs_z_bin", "type", "host_cell"]).size().rename("n_pos").reset_index()
    total = np.floor(counts["n_pos"].to_numpy() * s.ratio + 0.5).astype(np.int64)
    n2 = np.floor(total * s.n2_fraction + 0.5).astype(np.int64)
    rows = []
    for (b, t, c, npos), tot, k2 in zip(counts[["nobs_z_bin", "type", "host_cell", "n_pos"]].itertuples(index=False),
                                        total, n2, strict=True):
        rows.append({"nobs_z_bin": b, "type": t, "host_cell": int(c), "pool": "N1", "n_pos": int(npos),
                     "quota": int(tot - k2)})
        rows.append({"nobs_z_bin": b, "type": t, "host_cell": int(c), "pool": "N2", "n_pos": int(npos), "quota": int(k2)})
    q = pd.DataFrame(rows, columns=[*STRATUM_KEY, "n_pos", "quota"]).astype({"host_cell": "int16"})
    return q.sort_values(STRATUM_KEY, kind="mergesort").reset_index(drop=True)


def rebalance_pools(quotas: pd.DataFrame, available: pd.DataFrame) -> pd.DataFrame:
    """Quotas with each pool's shortfall moved to the other pool of its stratum (as far as that one has
    rows to spare); ``quota_protocol`` keeps the quota before the move."""
    key = STRATUM_KEY
    q = quotas.merge(available[[*key, "available"]], on=key, how="left")
    q["available"] = q["available"].fillna(0).astype(np.int64)
    q["quota_protocol"] = q["quota"]
    short = (q["quota"] - q["available"]).clip(lower=0)
    spare = (q["available"] - q["quota"]).clip(lower=0)
    group = q.groupby(key[:-1], sort=False).ngroup()          # the pools of one stratum share a group
    tot_short = short.groupby(group).transform("sum") - short   # the other pool's shortfall
    q["quota"] = q["quota"] - short + np.minimum(spare, tot_short)
    return q.drop(columns="available").sort_values(key, kind="mergesort").reset_index(drop=True)


def take_top_k(neg: pd.DataFrame, quotas: pd.DataFrame) -> pd.DataFrame:
    """Reference selection: within each stratum (:data:`STRATUM_KEY`), the ``quota`` rows first in (order_hash, id)."""
    n = neg.sort_values([*STRATUM_KEY, "order_hash", "id"], kind="mergesort")
    rank = n.groupby(STRATUM_KEY, sort=False).cumcount()
    n = n.assign(_rank=rank.to_numpy()).merge(quotas[[*STRATUM_KEY, "quota"]], on=STRATUM_KEY, how="inner")
    return n[n["_rank"] < n["quota"]].drop(columns=["_rank", "quota"]).reset_index(drop=True)


def shortfalls(quotas: pd.DataFrame, available: pd.DataFrame, taken: pd.DataFrame) -> pd.DataFrame:
    """Per stratum and pool: quota, available, taken and shortfall (never silently filled)."""
    key = STRATUM_KEY
    got = taken.groupby(key).size().rename("taken").reset_index()
    out = quotas.merge(available, on=key, how="left").merge(got, on=key, how="left")
    out[["available", "taken"]] = out[["available", "taken"]].fillna(0).astype(np.int64)
    out["shortfall"] = out["quota"] - out["taken"]
    return out.sort_values(key, kind="mergesort").reset_index(drop=True)


def stratum_shortfalls(short: pd.DataFrame) -> pd.DataFrame:
    """Per (nobs_z_bin, type): negatives the protocol asks for (ratio x positives), taken, and the fraction short."""
    q = "quota_protocol" if "quota_protocol" in short else "quota"
    g = short.groupby(["nobs_z_bin", "type"], sort=True)[[q, "taken"]].sum().rename(columns={q: "wanted"})
    g["short_fraction"] = ((g["wanted"] - g["taken"]).clip(lower=0) / g["wanted"].where(g["wanted"] > 0)).fillna(0.0)
    return g.reset_index()


def dedupe_ids(rows: pd.DataFrame, what: str, on_bad_rows: str) -> tuple[pd.DataFrame, int]:
    """Drop repeated object ids (keeping the first by ra, dec); error instead when ``on_bad_rows='error'``."""
    dup = rows["id"].duplicated(keep=False)
    if not dup.any():
        return rows, 0
    ids = sorted(set(rows.loc[dup, "id"]))
    if on_bad_rows == "error":
        raise CatalogInputError(f"{what}: {len(ids)} duplicate object id(s) across sweeps, e.g. {ids[:5]}")
    keep = rows.sort_values(["id", "ra", "dec", "order_hash"], kind="mergesort").drop_duplicates("id", keep="first")
    return keep.reset_index(drop=True), int(len(rows) - len(keep))
