"""Runs: a spec (:mod:`~intro_dgm.runs.spec`), what a run measures
(:mod:`~intro_dgm.runs.metrics`), running one or a sweep (:mod:`~intro_dgm.runs.runner`),
the results store and the arrays beside it (:mod:`~intro_dgm.runs.store`), and tables over
stored rows (:mod:`~intro_dgm.runs.tables`). :mod:`intro_dgm.protocol` gathers the public
names in one place.
"""
