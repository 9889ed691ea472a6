"""Reference values of KL[vMF(mu, kappa) || U(S^{m-1})] at 50 significant digits (mpmath).

    .venv/bin/python tests/data/make_vmf_reference.py   # writes vmf_kl_reference.json

KL = kappa A_m(kappa) + ln C_m(kappa) + ln |S^{m-1}|, evaluated term by term from its
definition (not from the package's rearranged form), so the test compares two routes.
"""
import json
from pathlib import Path

import mpmath as mp

mp.mp.dps = 50
DIMS = (3, 16, 64, 256)
KAPPAS = ("1e-3", "1e-2", "0.1", "1", "10", "100", "1e3", "1e4")


def kl(m: int, kappa) -> mp.mpf:
    nu = mp.mpf(m) / 2 - 1
    ratio = mp.besseli(nu + 1, kappa) / mp.besseli(nu, kappa)
    log_c = nu * mp.log(kappa) - mp.mpf(m) / 2 * mp.log(2 * mp.pi) - mp.log(mp.besseli(nu, kappa))
    log_area = mp.log(2) + mp.mpf(m) / 2 * mp.log(mp.pi) - mp.loggamma(mp.mpf(m) / 2)
    return kappa * ratio + log_c + log_area


if __name__ == "__main__":
    rows = [{"m": m, "kappa": float(k), "kl": mp.nstr(kl(m, mp.mpf(k)), 30),
             "mean_length": mp.nstr(mp.besseli(mp.mpf(m) / 2, mp.mpf(k))
                                    / mp.besseli(mp.mpf(m) / 2 - 1, mp.mpf(k)), 30)}
            for m in DIMS for k in KAPPAS]
    out = Path(__file__).with_name("vmf_kl_reference.json")
    out.write_text(json.dumps(rows, indent=1) + "\n")
    print(f"wrote {len(rows)} values to {out}")
