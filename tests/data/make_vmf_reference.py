"""Reference values of KL[vMF(mu, kappa) || U(S^{m-1})], its derivative in kappa and the mean
resultant length A_m(kappa), at 50 significant digits (mpmath).

    .venv/bin/python tests/data/make_vmf_reference.py   # writes vmf_kl_reference.json

KL = kappa A_m(kappa) + ln C_m(kappa) + ln |S^{m-1}|, evaluated term by term from its
definition (not from the package's rearranged form), so the test compares two routes.
dKL/dkappa = kappa A_m'(kappa) with A_m' = 1 - A_m^2 - (m - 1) A_m / kappa (the Bessel
recurrences), again the textbook form, not the package's large-kappa series. Up to
kappa = 1e8 these cancel (kappa A_m and ln C_m are both ~1e8 while the KL is ~20; A_m' is
1 - A_m^2 ~ 1e-8 minus a term that agrees with it to ~1e-16): 50 digits leave more than 30.
"""
import json
from pathlib import Path

import mpmath as mp

mp.mp.dps = 50
DIMS = (3, 16, 64, 256)
KAPPAS = ("1e-3", "1e-2", "0.1", "1", "10", "100", "1e3", "1e4", "1e5", "1e6", "1e7", "1e8")


def mean_length(m: int, kappa) -> mp.mpf:
    nu = mp.mpf(m) / 2 - 1
    return mp.besseli(nu + 1, kappa) / mp.besseli(nu, kappa)


def kl(m: int, kappa) -> mp.mpf:
    nu = mp.mpf(m) / 2 - 1
    log_c = nu * mp.log(kappa) - mp.mpf(m) / 2 * mp.log(2 * mp.pi) - mp.log(mp.besseli(nu, kappa))
    log_area = mp.log(2) + mp.mpf(m) / 2 * mp.log(mp.pi) - mp.loggamma(mp.mpf(m) / 2)
    return kappa * mean_length(m, kappa) + log_c + log_area


def dkl_dkappa(m: int, kappa) -> mp.mpf:
    a = mean_length(m, kappa)
    return kappa * (1 - a * a - (m - 1) / kappa * a)


if __name__ == "__main__":
    rows = [{"m": m, "kappa": float(k), "kl": mp.nstr(kl(m, mp.mpf(k)), 30),
             "mean_length": mp.nstr(mean_length(m, mp.mpf(k)), 30),
             "dkl_dkappa": mp.nstr(dkl_dkappa(m, mp.mpf(k)), 30)}
            for m in DIMS for k in KAPPAS]
    out = Path(__file__).with_name("vmf_kl_reference.json")
    out.write_text(json.dumps(rows, indent=1) + "\n")
    print(f"wrote {len(rows)} values to {out}")
