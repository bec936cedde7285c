"""The embedded sample: 25 small real genomes (``sample/genomes``, origin and licence in
``sample/ATTRIBUTION.md``) and the read simulator that turns them into labelled reads
(``python -m sample.simulate --out DIR``; ``make convert`` runs it).

Part of the source checkout, not of the installed library: ``pip install readshard`` ships
neither the simulator nor the genomes, and no installed package imports this one.
"""
