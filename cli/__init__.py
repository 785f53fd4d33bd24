"""The ``vigil`` command line: the one package allowed to import every layer (core, training,
deployments, KYC)."""
