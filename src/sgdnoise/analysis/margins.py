"""Width of the decision boundary at the end of training (docs/physics.md A7).

From the final stabilities h_mu of each replica and the margin kappa:
- gaps h_mu - kappa and their density on fixed bins;
- contacts: samples with |h_mu - kappa| <= contact_tolerance (square-hinge solutions sit ON
  the boundary, just below kappa: about 0.3 P contacts at P/N = 1 for small noise);
- the fraction of samples with h_mu < kappa + delta for a few delta;
- kappa_eff = min_mu h_mu.
Noisier algorithms are expected to end with fewer contacts and a larger kappa_eff.
Averages are over replicas, with the standard error over independent units (a same-init
pair is one: analysis.statistics).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from sgdnoise.analysis.statistics import standard_error

CONTACT_TOLERANCE = 1e-3
DELTAS = (0.01, 0.05, 0.1, 0.3)
# Bins of the gap density: width 0.05 over [-3, 3] (the UNSAT ridge at kappa = 1 ends with
# gaps down to about -2). The density counts every sample: mass outside the bins is lost
# from the plot, not spread over the bins.
GAP_EDGES = np.linspace(-3.0, 3.0, 121)


def margins(
    final_stabilities: np.ndarray,
    kappa: float,
    contact_tolerance: float = CONTACT_TOLERANCE,
    per_unit: int = 1,
) -> xr.Dataset:
    """Contacts, near-boundary fractions, kappa_eff and the gap density, (replica, sample) in;
    standard errors over units of ``per_unit`` consecutive replicas (2: same-init pairs)."""
    gaps = final_stabilities - kappa
    contacts = (np.abs(gaps) <= contact_tolerance).sum(axis=1).astype(float)
    within = np.stack([(gaps < delta).mean(axis=1) for delta in DELTAS], axis=1)
    kappa_eff = final_stabilities.min(axis=1)
    widths = np.diff(GAP_EDGES)
    density = np.stack([np.histogram(g, GAP_EDGES)[0] / (g.size * widths) for g in gaps])
    centres = 0.5 * (GAP_EDGES[1:] + GAP_EDGES[:-1])
    return xr.Dataset(
        {
            "contacts": ((), contacts.mean()),
            "contacts_stderr": ((), standard_error(contacts, per_unit)),
            "contact_fraction": ((), contacts.mean() / gaps.shape[1]),
            "contact_fraction_stderr": ((), standard_error(contacts, per_unit) / gaps.shape[1]),
            "fraction_within": (("delta",), within.mean(axis=0)),
            "fraction_within_stderr": (("delta",), standard_error(within, per_unit)),
            "kappa_eff": ((), kappa_eff.mean()),
            "kappa_eff_stderr": ((), standard_error(kappa_eff, per_unit)),
            "gap_density": (("gap",), density.mean(axis=0)),
            "gap_density_stderr": (("gap",), standard_error(density, per_unit)),
        },
        coords={"delta": list(DELTAS), "gap": centres},
        attrs={"contact_tolerance": contact_tolerance},
    )


UNITS = {
    "contacts": (
        "1",
        "number of samples with |h - kappa| <= contact_tolerance, mean over replicas",
    ),
    "contacts_stderr": ("1", "standard error of the number of contacts"),
    "contact_fraction": ("1", "contacts / P"),
    "contact_fraction_stderr": ("1", "standard error of contacts / P"),
    "fraction_within": ("1", "fraction of samples with h < kappa + delta"),
    "fraction_within_stderr": ("1", "standard error of the fraction within delta"),
    "kappa_eff": ("1", "kappa_eff = min over samples of the final stability, mean over replicas"),
    "kappa_eff_stderr": ("1", "standard error of kappa_eff"),
    "gap_density": ("1", "probability density of the final gaps h - kappa"),
    "gap_density_stderr": ("1", "standard error of the gap density"),
    "delta": ("1", "distance delta above the margin"),
    "gap": ("1", "gap h - kappa (bin centre)"),
}
