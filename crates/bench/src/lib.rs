//! Native anchors for the benchmarks; everything is in `benches/`.
