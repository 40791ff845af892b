"""Demo tooling, apart from the product: a synthetic customer store (`demo.data`) and simulated
recipient engagement posted through the real webhook (`demo.engagement`). Used by `touchflow
demo-data`, `touchflow demo-engagement`, the tests and the benchmarks; the engine never imports it."""
