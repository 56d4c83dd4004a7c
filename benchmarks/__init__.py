"""asv benchmarks for fastbp (see README: "Benchmarks")."""
